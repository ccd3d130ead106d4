/**
 * One interface for the code hosts (GitHub, GitLab). Everything above this file sees host-neutral shapes;
 * everything below it speaks one host's REST API. Errors are the typed ones of host-errors.ts.
 */
import type { HostProvider } from './host-errors.js';

export type { HostProvider } from './host-errors.js';

/** The user name git sends with a token over HTTPS, per host (GitHub: any for user tokens, this one for app tokens). */
export const GIT_TOKEN_USERNAME: Record<HostProvider, string> = {
  github: 'x-access-token',
  gitlab: 'oauth2',
};

/** The account a token acts as. */
export interface HostAccount {
  id: string;
  login: string;
  name: string | null;
}

/** A repository as the host describes it. */
export interface HostRepository {
  /** The host's stable id (GitHub repository id, GitLab project id), as a string. */
  id: string;
  /** GitHub owner login or GitLab namespace full path (may contain `/`). */
  owner: string;
  /** Repository name (GitLab: the project path). */
  name: string;
  /** `owner/name`. */
  fullName: string;
  /** HTTPS clone URL; credentials never go in it. */
  cloneUrl: string;
  webUrl: string;
  /** Null for an empty repository that has no branch yet. */
  defaultBranch: string | null;
  private: boolean;
  archived: boolean;
}

export interface HostRepositoryPage {
  repositories: HostRepository[];
  /** Page number to ask for next, or null on the last page. */
  nextPage: number | null;
}

/** Events a webhook is created for, in the host's own terms for "a ref moved". */
export type HostWebhookEvent = 'push' | 'tag_push';

export interface HostWebhookSpec {
  url: string;
  /** GitHub: HMAC key of X-Hub-Signature-256; GitLab: the X-Gitlab-Token value. */
  secret: string;
  events: readonly HostWebhookEvent[];
}

export type HostComparisonStatus = 'ahead' | 'behind' | 'diverged' | 'identical';

export interface HostSignature {
  name: string;
  email: string;
  date: Date;
}

export interface HostCommit {
  sha: string;
  parents: string[];
  /** Full message without trailing newlines (GitHub strips them, GitLab does not: normalized here). */
  message: string;
  author: HostSignature | null;
  committer: HostSignature | null;
}

export type HostFileStatus = 'added' | 'modified' | 'removed' | 'renamed' | 'copied' | 'changed';

/** One path changed between the merge base and the head of a comparison. */
export interface HostChangedFile {
  path: string;
  /** Source path of a rename or copy; null otherwise. */
  previousPath: string | null;
  /** `changed` is a change of type or mode without new content (GitHub's term). */
  status: HostFileStatus;
  /** Blob SHA of the new content when the host gives it (GitHub does, GitLab does not); null for removals. */
  sha: string | null;
  /** New git file mode (`100644`, `100755`, `120000`, `160000`) when the host gives it (GitLab does). */
  mode: string | null;
  previousMode: string | null;
  /** Line counts; null when the host did not say (GitLab without a patch). */
  additions: number | null;
  deletions: number | null;
  /** A textual patch came with the entry (false for binaries, pure renames, and diffs the host cut). */
  patchAvailable: boolean;
}

/** Where the host's answer is incomplete, so a caller must not treat it as the whole change. */
export interface HostComparisonTruncation {
  /** Fewer commits listed than the range holds (GitHub lists at most 250 without paging). */
  commits: boolean;
  /** The file list may be cut (GitHub stops at 300 files, GitLab at its diff file limit). */
  files: boolean;
  /** GitLab's compare_timeout: the diff collection overflowed its limits. */
  timedOut: boolean;
  /** Some entries came without their patch because it was too large or collapsed. */
  patches: boolean;
}

/** A normalized `base...head` comparison: commits in base..head (oldest first), files of merge-base..head. */
export interface HostComparison {
  status: HostComparisonStatus;
  aheadBy: number;
  /** Null when the host does not say (GitLab, unless ahead or identical). */
  behindBy: number | null;
  baseSha: string;
  headSha: string;
  mergeBaseSha: string | null;
  commits: HostCommit[];
  files: HostChangedFile[];
  truncated: HostComparisonTruncation;
}

/** A file's content at a commit, read by its path. */
export interface HostFileContent {
  content: Buffer;
  /** The blob SHA the host reported for the file; the content was checked against it. */
  blobSha: string;
}

/** What an OAuth token endpoint granted. */
export interface HostTokenGrant {
  accessToken: string;
  refreshToken?: string;
  expiresAt?: Date;
  /** OAuth scopes (empty for GitHub App user tokens, which have permissions instead). */
  scopes: string[];
}

/** A code host's REST API, as the rest of reposync needs it. */
export interface CodeHost {
  readonly provider: HostProvider;
  /** The account a user token belongs to (GitHub installation tokens have none). */
  getAccount(token: string): Promise<HostAccount>;
  /** Repositories the token can access, one page (1-based) at a time. */
  listRepositories(token: string, page: number): Promise<HostRepositoryPage>;
  /** One repository; HostNotFound when it does not exist or the token cannot see it. */
  getRepository(token: string, owner: string, name: string): Promise<HostRepository>;
  /** SHA a branch points to, or null when the branch does not exist (HostNotFound for a missing repository). */
  getBranchHead(token: string, owner: string, name: string, branch: string): Promise<string | null>;
  /** Creates a push webhook; returns the host's hook id. */
  createWebhook(token: string, owner: string, name: string, hook: HostWebhookSpec): Promise<string>;
  /** Deletes a webhook; a hook that is already gone is not an error. */
  deleteWebhook(token: string, owner: string, name: string, hookId: string): Promise<void>;
  /** Compares `base...head` (three dots: against their merge base). */
  compare(token: string, owner: string, name: string, base: string, head: string): Promise<HostComparison>;
  /**
   * Id of the root tree of commit `sha`: what a snapshot of that commit must hash to (the compare-delta
   * proof). HostNotFound when there is no such commit.
   */
  getCommitTree(token: string, owner: string, name: string, sha: string): Promise<string>;
  /** Bytes of a blob by its SHA, checked against the SHA. */
  getBlob(token: string, owner: string, name: string, sha: string): Promise<Buffer>;
  /**
   * Bytes of the file (or symlink target) at `path` as of `ref`, checked against the blob SHA the host
   * reports; HostNotFound when there is no such file. For hosts whose comparisons carry no blob SHAs
   * (GitLab), the way compare-delta downloads changed files.
   */
  getFileAtRef?(
    token: string,
    owner: string,
    name: string,
    path: string,
    ref: string,
  ): Promise<HostFileContent>;
  /** Exchanges an OAuth authorization code (with the PKCE verifier when one was used). */
  exchangeCode(code: string, redirectUri: string, codeVerifier?: string): Promise<HostTokenGrant>;
  /** Trades a refresh token for a new grant (refresh tokens rotate: store the new one). */
  refreshToken(refreshToken: string): Promise<HostTokenGrant>;
}
