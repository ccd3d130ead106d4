/**
 * What a webhook delivery means for us, independent of the host's payload shape. Pure functions: the
 * payload has already been authenticated when these run.
 */
export type HostEvent =
  /** A branch moved (or was created); `after` is the new head when the payload says it. */
  | { kind: 'branch-updated'; repository: RepositoryRef | null; branch: string; after: string | null }
  /** A branch was deleted on the host. */
  | { kind: 'branch-deleted'; repository: RepositoryRef | null; branch: string }
  /** Recorded for the log (tags, pings, installations, merge requests), no sync. */
  | { kind: 'recorded'; repository: RepositoryRef | null; detail: string }
  /** A GitHub App installation changed (created, deleted, suspend, unsuspend, new_permissions_accepted). */
  | {
      kind: 'installation';
      repository: null;
      installationId: string;
      action: string;
      accountLogin: string | null;
      detail: string;
    }
  /** An event we do not handle. */
  | { kind: 'ignored'; repository: RepositoryRef | null; detail: string };

/** A repository named by a payload (for app and system hooks, which do not carry our repository id). */
export interface RepositoryRef {
  owner: string;
  name: string;
}

const ZERO_SHA = /^0+$/;
const SHA = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

type Json = Record<string, unknown>;

function obj(value: unknown): Json | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : null;
}

/** A string field, or null: missing, or holding a NUL (no git ref, name or id can, nor can Postgres text). */
function str(value: unknown): string | null {
  return typeof value === 'string' && !value.includes('\0') ? value : null;
}

function splitFullName(fullName: string | null): RepositoryRef | null {
  if (!fullName) return null;
  const at = fullName.lastIndexOf('/');
  if (at <= 0 || at === fullName.length - 1) return null;
  return { owner: fullName.slice(0, at).toLowerCase(), name: fullName.slice(at + 1).toLowerCase() };
}

function pushEvent(
  ref: string | null,
  after: string | null,
  deleted: boolean,
  repository: RepositoryRef | null,
): HostEvent {
  if (!ref) return { kind: 'ignored', repository, detail: 'push without a ref' };
  if (ref.startsWith('refs/tags/')) return { kind: 'recorded', repository, detail: `tag ${ref.slice(10)}` };
  if (!ref.startsWith('refs/heads/')) return { kind: 'ignored', repository, detail: `ref ${ref}` };
  const branch = ref.slice('refs/heads/'.length);
  if (deleted || (after !== null && ZERO_SHA.test(after)))
    return { kind: 'branch-deleted', repository, branch };
  return { kind: 'branch-updated', repository, branch, after: after && SHA.test(after) ? after : null };
}

/** Interprets a GitHub delivery (`X-GitHub-Event` plus the parsed body). */
export function githubEvent(event: string, payload: unknown): HostEvent {
  const body = obj(payload) ?? {};
  const repository = splitFullName(str(obj(body.repository)?.full_name));
  switch (event) {
    case 'push':
      return pushEvent(str(body.ref), str(body.after), body.deleted === true, repository);
    case 'create':
    case 'delete': {
      const refType = str(body.ref_type);
      const ref = str(body.ref);
      if (refType !== 'branch' || !ref)
        return { kind: 'recorded', repository, detail: `${event} ${refType ?? 'ref'} ${ref ?? ''}`.trim() };
      return event === 'create'
        ? { kind: 'branch-updated', repository, branch: ref, after: null }
        : { kind: 'branch-deleted', repository, branch: ref };
    }
    case 'ping':
      return { kind: 'recorded', repository, detail: 'ping' };
    case 'installation': {
      const installation = obj(body.installation);
      const id = installation?.id;
      const action = str(body.action) ?? '';
      if (typeof id !== 'number' && typeof id !== 'string')
        return { kind: 'recorded', repository, detail: `installation ${action}`.trim() };
      return {
        kind: 'installation',
        repository: null,
        installationId: String(id),
        action,
        accountLogin: str(obj(installation?.account)?.login),
        detail: `installation ${id} ${action}`.trim(),
      };
    }
    case 'installation_repositories':
      return { kind: 'recorded', repository, detail: `${event} ${str(body.action) ?? ''}`.trim() };
    case 'pull_request':
      return { kind: 'recorded', repository, detail: `pull_request ${str(body.action) ?? ''}`.trim() };
    default:
      return { kind: 'ignored', repository, detail: `event ${event}` };
  }
}

/** Interprets a GitLab delivery (`X-Gitlab-Event` plus the parsed body). */
export function gitlabEvent(event: string, payload: unknown): HostEvent {
  const body = obj(payload) ?? {};
  const project = obj(body.project);
  const repository = splitFullName(str(project?.path_with_namespace) ?? str(body.path_with_namespace));
  const kind = str(body.object_kind) ?? str(body.event_name);
  switch (event) {
    case 'Push Hook':
    case 'Tag Push Hook':
    case 'System Hook':
      if (kind === 'push' || kind === 'tag_push') {
        return pushEvent(str(body.ref), str(body.after), false, repository);
      }
      return { kind: 'recorded', repository, detail: `${event} ${kind ?? ''}`.trim() };
    case 'Merge Request Hook':
      return { kind: 'recorded', repository, detail: 'merge request' };
    default:
      return { kind: 'ignored', repository, detail: `event ${event}` };
  }
}
