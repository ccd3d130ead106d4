/**
 * Every Cypher statement of the graph index, in one place, always with parameters (never built from values).
 *
 * Model (Neo4j 5):
 *   (:Repository {id, tenantId, host, fullName})-[:HAS_BRANCH]->(:Branch {repositoryId, name, tenantId,
 *      headSha, headMovedAt, deletedAt})
 *   (:Branch)-[:HEAD]->(:Commit)                      exactly one while the branch exists; moved last
 *   (:Branch)-[:CONTAINS]->(:Commit)                  every commit indexed as part of the branch
 *   (:Branch)-[:CONTAINED {removedAt, replacedByHead}]->(:Commit)
 *                                                     was on the branch until a force-push left it behind
 *   (:Commit {repositoryId, sha, tenantId, subject, message, authoredAt, committedAt, parentCount,
 *      fileCount})-[:PARENT {index}]->(:Commit)       index 0 is the first parent
 *   (:Person {tenantId, email})-[:AUTHORED {name}]->(:Commit), -[:COMMITTED {name}]->(:Commit)
 *   (:Commit)-[:CHANGED {status, similarity, additions, deletions, binary, previousPath}]->
 *      (:File {repositoryId, path, tenantId})
 *
 * Choices:
 * - Every node carries `tenantId`, and every MERGE puts it in the pattern next to the unique key: if a key
 *   ever existed under another tenant, the MERGE would try to create a second node and the uniqueness
 *   constraint would fail the write, instead of linking two tenants' data. Every read matches it.
 * - People are per tenant (`(tenantId, email)`), so no traversal can lead from one tenant's commits to
 *   another's. The name is on AUTHORED/COMMITTED, not on the Person: one email is written under several
 *   names over the years, and each commit keeps the one it was made with.
 * - A Commit known only as the parent of an indexed commit (or as a HEAD) is a stub with just its key; it is
 *   filled in when its own range is indexed.
 * - Dates are Neo4j datetimes (ordered, comparable); reads return epoch milliseconds, turned into ISO
 *   strings in graph-reader.ts. Integers from rows go through toInteger() because the driver sends every
 *   JavaScript number as a float.
 * - MERGE everywhere: re-running any batch after a crash finds what the first run wrote. The HEAD is moved
 *   by the last statement of an index run, so a reader never sees a HEAD whose history is half written.
 */

/** A statement and the parameters it takes (checked at the call site). */
export interface CypherStatement<P extends object> {
  readonly name: string;
  readonly text: string;
  /** Type-level only: the parameters the statement expects. */
  readonly params?: P;
}

function statement<P extends object>(name: string, text: string): CypherStatement<P> {
  return { name, text: text.trim() };
}

/** Parameters every statement of one branch's index run takes. */
export interface BranchScope {
  tenantId: string;
  repositoryId: string;
  branch: string;
}

export interface RowsOf<R> extends BranchScope {
  rows: R[];
}

// ---------------------------------------------------------------------------------------------------------
// Schema: created at start-up, idempotent (IF NOT EXISTS), then waited for so the first MERGE uses them.

export const SCHEMA_STATEMENTS: readonly CypherStatement<Record<string, never>>[] = [
  statement(
    'repository_id',
    'CREATE CONSTRAINT repository_id IF NOT EXISTS FOR (r:Repository) REQUIRE r.id IS UNIQUE',
  ),
  statement(
    'branch_key',
    'CREATE CONSTRAINT branch_key IF NOT EXISTS FOR (b:Branch) REQUIRE (b.repositoryId, b.name) IS UNIQUE',
  ),
  statement(
    'commit_key',
    'CREATE CONSTRAINT commit_key IF NOT EXISTS FOR (c:Commit) REQUIRE (c.repositoryId, c.sha) IS UNIQUE',
  ),
  statement(
    'file_key',
    'CREATE CONSTRAINT file_key IF NOT EXISTS FOR (f:File) REQUIRE (f.repositoryId, f.path) IS UNIQUE',
  ),
  statement(
    'person_key',
    'CREATE CONSTRAINT person_key IF NOT EXISTS FOR (p:Person) REQUIRE (p.tenantId, p.email) IS UNIQUE',
  ),
  // Composite indexes need every property in the predicate; these serve lookups by repository alone.
  statement(
    'repository_tenant',
    'CREATE INDEX repository_tenant IF NOT EXISTS FOR (r:Repository) ON (r.tenantId)',
  ),
  statement(
    'commit_repository',
    'CREATE INDEX commit_repository IF NOT EXISTS FOR (c:Commit) ON (c.repositoryId)',
  ),
  statement('file_repository', 'CREATE INDEX file_repository IF NOT EXISTS FOR (f:File) ON (f.repositoryId)'),
  statement(
    'branch_repository',
    'CREATE INDEX branch_repository IF NOT EXISTS FOR (b:Branch) ON (b.repositoryId)',
  ),
  statement('person_tenant', 'CREATE INDEX person_tenant IF NOT EXISTS FOR (p:Person) ON (p.tenantId)'),
];

export const AWAIT_INDEXES = statement<{ timeoutSeconds: number }>(
  'await_indexes',
  'CALL db.awaitIndexes(toInteger($timeoutSeconds))',
);

export const PING = statement<Record<string, never>>('ping', 'RETURN 1 AS ok');

// ---------------------------------------------------------------------------------------------------------
// Writes, in the order an index run issues them.

/** The repository and branch nodes (never the HEAD). */
export const UPSERT_REPOSITORY_AND_BRANCH = statement<BranchScope & { host: string; fullName: string }>(
  'upsert_repository_and_branch',
  `
MERGE (r:Repository {id: $repositoryId, tenantId: $tenantId})
SET r.host = $host, r.fullName = $fullName
MERGE (b:Branch {repositoryId: $repositoryId, name: $branch, tenantId: $tenantId})
MERGE (r)-[:HAS_BRANCH]->(b)
RETURN count(b) AS written
`,
);

/** Commit nodes and the branch's CONTAINS; a commit back on the branch loses its CONTAINED mark. */
export const WRITE_COMMITS = statement<
  RowsOf<{
    sha: string;
    subject: string;
    message: string;
    authoredAt: string;
    committedAt: string;
    parentCount: number;
    fileCount: number;
  }>
>(
  'write_commits',
  `
MATCH (b:Branch {repositoryId: $repositoryId, name: $branch, tenantId: $tenantId})
UNWIND $rows AS row
MERGE (c:Commit {repositoryId: $repositoryId, sha: row.sha, tenantId: $tenantId})
SET c.subject = row.subject,
    c.message = row.message,
    c.authoredAt = datetime(row.authoredAt),
    c.committedAt = datetime(row.committedAt),
    c.parentCount = toInteger(row.parentCount),
    c.fileCount = toInteger(row.fileCount)
MERGE (b)-[:CONTAINS]->(c)
WITH b, c
OPTIONAL MATCH (b)-[gone:CONTAINED]->(c)
DELETE gone
RETURN count(DISTINCT c) AS written
`,
);

/** PARENT relationships, creating stub commits for parents outside the range. */
export const WRITE_PARENTS = statement<RowsOf<{ sha: string; parentSha: string; index: number }>>(
  'write_parents',
  `
UNWIND $rows AS row
MATCH (c:Commit {repositoryId: $repositoryId, sha: row.sha, tenantId: $tenantId})
MERGE (p:Commit {repositoryId: $repositoryId, sha: row.parentSha, tenantId: $tenantId})
MERGE (c)-[parent:PARENT {index: toInteger(row.index)}]->(p)
RETURN count(parent) AS written
`,
);

/** People and their AUTHORED / COMMITTED relationships, each carrying the name used on that commit. */
export const WRITE_AUTHORSHIP = statement<
  RowsOf<{
    sha: string;
    authorEmail: string;
    authorName: string;
    committerEmail: string;
    committerName: string;
  }>
>(
  'write_authorship',
  `
UNWIND $rows AS row
MATCH (c:Commit {repositoryId: $repositoryId, sha: row.sha, tenantId: $tenantId})
MERGE (author:Person {tenantId: $tenantId, email: row.authorEmail})
MERGE (author)-[authored:AUTHORED]->(c)
SET authored.name = row.authorName
MERGE (committer:Person {tenantId: $tenantId, email: row.committerEmail})
MERGE (committer)-[committed:COMMITTED]->(c)
SET committed.name = row.committerName
RETURN count(c) AS written
`,
);

/** File nodes and CHANGED relationships (one per commit and path). */
export const WRITE_CHANGES = statement<
  RowsOf<{
    sha: string;
    path: string;
    status: string;
    similarity: number | null;
    additions: number | null;
    deletions: number | null;
    binary: boolean;
    previousPath: string | null;
  }>
>(
  'write_changes',
  `
UNWIND $rows AS row
MATCH (c:Commit {repositoryId: $repositoryId, sha: row.sha, tenantId: $tenantId})
MERGE (f:File {repositoryId: $repositoryId, path: row.path, tenantId: $tenantId})
MERGE (c)-[changed:CHANGED]->(f)
SET changed.status = row.status,
    changed.similarity = toInteger(row.similarity),
    changed.additions = toInteger(row.additions),
    changed.deletions = toInteger(row.deletions),
    changed.binary = row.binary,
    changed.previousPath = row.previousPath
RETURN count(changed) AS written
`,
);

/** Every commit the branch contains, with its parents: the input of a force-push plan. */
export const READ_BRANCH_MEMBERS = statement<BranchScope>(
  'read_branch_members',
  `
MATCH (:Branch {repositoryId: $repositoryId, name: $branch, tenantId: $tenantId})-[:CONTAINS]->(c:Commit)
OPTIONAL MATCH (c)-[parent:PARENT]->(p:Commit)
WITH c, parent, p
ORDER BY parent.index
RETURN c.sha AS sha, collect(p.sha) AS parents
`,
);

/** After a force-push: CONTAINS becomes CONTAINED for commits the new HEAD cannot reach (kept, not deleted). */
export const MARK_NO_LONGER_ON_BRANCH = statement<RowsOf<{ sha: string }> & { headSha: string }>(
  'mark_no_longer_on_branch',
  `
MATCH (b:Branch {repositoryId: $repositoryId, name: $branch, tenantId: $tenantId})
UNWIND $rows AS row
MATCH (b)-[contains:CONTAINS]->(c:Commit {repositoryId: $repositoryId, sha: row.sha, tenantId: $tenantId})
DELETE contains
MERGE (b)-[gone:CONTAINED]->(c)
SET gone.removedAt = datetime(), gone.replacedByHead = $headSha
RETURN count(gone) AS written
`,
);

/** The last write of an index run: the branch's single HEAD now points at `headSha`. */
export const MOVE_BRANCH_HEAD = statement<BranchScope & { headSha: string }>(
  'move_branch_head',
  `
MATCH (b:Branch {repositoryId: $repositoryId, name: $branch, tenantId: $tenantId})
MERGE (c:Commit {repositoryId: $repositoryId, sha: $headSha, tenantId: $tenantId})
WITH b, c
OPTIONAL MATCH (b)-[old:HEAD]->(previous:Commit)
WHERE previous <> c
DELETE old
WITH DISTINCT b, c
MERGE (b)-[:HEAD]->(c)
SET b.headSha = $headSha, b.headMovedAt = datetime(), b.deletedAt = null
RETURN b.headSha AS headSha
`,
);

/** A branch deleted on the host: its HEAD goes, the branch node and its history stay (marked deleted). */
export const REMOVE_BRANCH_HEAD = statement<BranchScope>(
  'remove_branch_head',
  `
MATCH (b:Branch {repositoryId: $repositoryId, name: $branch, tenantId: $tenantId})
OPTIONAL MATCH (b)-[head:HEAD]->(:Commit)
DELETE head
WITH DISTINCT b
SET b.headSha = null, b.deletedAt = coalesce(b.deletedAt, datetime())
RETURN count(b) AS branches
`,
);

// ---------------------------------------------------------------------------------------------------------
// Removing a repository: nodes go in bounded batches (repeat each statement until it deletes nothing).

export interface DeleteBatch {
  tenantId: string;
  repositoryId: string;
  batchSize: number;
}

export const DELETE_REPOSITORY_COMMITS = statement<DeleteBatch>(
  'delete_repository_commits',
  `
MATCH (n:Commit {repositoryId: $repositoryId, tenantId: $tenantId})
WITH n LIMIT toInteger($batchSize)
DETACH DELETE n
RETURN count(*) AS deleted
`,
);

export const DELETE_REPOSITORY_FILES = statement<DeleteBatch>(
  'delete_repository_files',
  `
MATCH (n:File {repositoryId: $repositoryId, tenantId: $tenantId})
WITH n LIMIT toInteger($batchSize)
DETACH DELETE n
RETURN count(*) AS deleted
`,
);

export const DELETE_REPOSITORY_BRANCHES = statement<DeleteBatch>(
  'delete_repository_branches',
  `
MATCH (n:Branch {repositoryId: $repositoryId, tenantId: $tenantId})
WITH n LIMIT toInteger($batchSize)
DETACH DELETE n
RETURN count(*) AS deleted
`,
);

/** The repository node itself, then the tenant's people who no longer have any commit. */
export const DELETE_REPOSITORY_NODE = statement<DeleteBatch>(
  'delete_repository_node',
  `
OPTIONAL MATCH (r:Repository {id: $repositoryId, tenantId: $tenantId})
DETACH DELETE r
WITH count(r) AS repositories
OPTIONAL MATCH (p:Person {tenantId: $tenantId})
WHERE NOT (p)--()
WITH repositories, p LIMIT toInteger($batchSize)
DETACH DELETE p
WITH repositories, count(p) AS people
RETURN repositories + people AS deleted
`,
);

// ---------------------------------------------------------------------------------------------------------
// Reads for the dashboard: every one scoped by $tenantId on every node it matches.

export interface RepositoryScope {
  tenantId: string;
  repositoryId: string;
}

/** The repository as indexed, or no row (unknown, or another tenant's). */
export const READ_REPOSITORY = statement<RepositoryScope>(
  'read_repository',
  `
MATCH (r:Repository {id: $repositoryId, tenantId: $tenantId})
RETURN r.id AS id, r.host AS host, r.fullName AS fullName
`,
);

/** Node and relationship counts of one repository. */
export const REPOSITORY_COUNTS = statement<RepositoryScope>(
  'repository_counts',
  `
OPTIONAL MATCH (c:Commit {repositoryId: $repositoryId, tenantId: $tenantId})
WITH count(c) AS commits, count(c.message) AS indexedCommits
OPTIONAL MATCH (f:File {repositoryId: $repositoryId, tenantId: $tenantId})
WITH commits, indexedCommits, count(f) AS files
OPTIONAL MATCH (:Commit {repositoryId: $repositoryId, tenantId: $tenantId})-[parent:PARENT]->(:Commit)
WITH commits, indexedCommits, files, count(parent) AS parents
OPTIONAL MATCH (:Commit {repositoryId: $repositoryId, tenantId: $tenantId})-[changed:CHANGED]->(:File)
WITH commits, indexedCommits, files, parents, count(changed) AS changes
OPTIONAL MATCH (p:Person {tenantId: $tenantId})-[:AUTHORED|COMMITTED]->(:Commit {repositoryId: $repositoryId, tenantId: $tenantId})
RETURN commits, indexedCommits, files, parents, changes, count(DISTINCT p) AS people
`,
);

/** The repository's branches with their HEAD and how many commits are (and are no longer) on each. */
export const REPOSITORY_BRANCHES = statement<RepositoryScope>(
  'repository_branches',
  `
MATCH (:Repository {id: $repositoryId, tenantId: $tenantId})-[:HAS_BRANCH]->(b:Branch {tenantId: $tenantId})
RETURN b.name AS name, b.headSha AS headSha, b.deletedAt IS NOT NULL AS deleted,
       COUNT { (b)-[:CONTAINS]->(:Commit) } AS commits,
       COUNT { (b)-[:CONTAINED]->(:Commit) } AS noLongerOnBranch
ORDER BY name ASC
`,
);

/** People who authored the most commits of a repository, with the name of their latest commit. */
export const TOP_CONTRIBUTORS = statement<RepositoryScope & { limit: number }>(
  'top_contributors',
  `
MATCH (p:Person {tenantId: $tenantId})-[a:AUTHORED]->(c:Commit {repositoryId: $repositoryId, tenantId: $tenantId})
WITH p, a, c
ORDER BY c.authoredAt DESC
WITH p, collect(a.name)[0] AS name, count(c) AS commits, min(c.authoredAt) AS first, max(c.authoredAt) AS last
RETURN p.email AS email, name, commits,
       first.epochMillis AS firstAuthoredAtMs, last.epochMillis AS lastAuthoredAtMs
ORDER BY commits DESC, email ASC
LIMIT toInteger($limit)
`,
);

/** Commits that changed one path, newest first, with their author and the change. */
export const FILE_HISTORY = statement<RepositoryScope & { path: string; limit: number }>(
  'file_history',
  `
MATCH (f:File {repositoryId: $repositoryId, path: $path, tenantId: $tenantId})
MATCH (c:Commit {tenantId: $tenantId})-[changed:CHANGED]->(f)
OPTIONAL MATCH (p:Person {tenantId: $tenantId})-[a:AUTHORED]->(c)
RETURN c.sha AS sha, c.subject AS subject,
       c.authoredAt.epochMillis AS authoredAtMs, c.committedAt.epochMillis AS committedAtMs,
       p.email AS authorEmail, a.name AS authorName,
       changed.status AS status, changed.previousPath AS previousPath,
       changed.additions AS additions, changed.deletions AS deletions, changed.binary AS binary
ORDER BY c.committedAt DESC, c.sha ASC
LIMIT toInteger($limit)
`,
);

/**
 * Files changed in the same commits as one path, most often first. Commits touching more than
 * `maxFilesPerCommit` files (mass renames, reformatting) say nothing about coupling and are left out.
 */
export const CO_CHANGED_FILES = statement<
  RepositoryScope & { path: string; limit: number; maxFilesPerCommit: number }
>(
  'co_changed_files',
  `
MATCH (f:File {repositoryId: $repositoryId, path: $path, tenantId: $tenantId})
MATCH (c:Commit {tenantId: $tenantId})-[:CHANGED]->(f)
WHERE c.fileCount <= toInteger($maxFilesPerCommit)
MATCH (c)-[:CHANGED]->(other:File {tenantId: $tenantId})
WHERE other <> f
WITH other, count(DISTINCT c) AS commits, max(c.committedAt) AS last
RETURN other.path AS path, commits, last.epochMillis AS lastChangedTogetherAtMs
ORDER BY commits DESC, path ASC
LIMIT toInteger($limit)
`,
);

/** Whether the branch and (when given) the `since` commit are indexed: a lookup before BRANCH_COMMITS. */
export const READ_BRANCH = statement<BranchScope & { since: string | null }>(
  'read_branch',
  `
MATCH (b:Branch {repositoryId: $repositoryId, name: $branch, tenantId: $tenantId})
OPTIONAL MATCH (since:Commit {repositoryId: $repositoryId, sha: $since, tenantId: $tenantId})
RETURN b.headSha AS headSha, b.deletedAt IS NOT NULL AS deleted, since IS NOT NULL AS sinceKnown
`,
);

/**
 * Commits on a branch that are not `since` nor its ancestors (git's `since..branch`), newest first; all of
 * the branch's commits when `since` is null.
 */
export const BRANCH_COMMITS = statement<BranchScope & { since: string | null; limit: number }>(
  'branch_commits',
  `
MATCH (b:Branch {repositoryId: $repositoryId, name: $branch, tenantId: $tenantId})
OPTIONAL MATCH (since:Commit {repositoryId: $repositoryId, sha: $since, tenantId: $tenantId})
OPTIONAL MATCH (since)-[:PARENT*0..]->(ancestor:Commit)
WITH b, collect(DISTINCT ancestor.sha) AS excluded
MATCH (b)-[:CONTAINS]->(c:Commit {tenantId: $tenantId})
WHERE NOT c.sha IN excluded
OPTIONAL MATCH (p:Person {tenantId: $tenantId})-[a:AUTHORED]->(c)
RETURN c.sha AS sha, c.subject AS subject,
       c.authoredAt.epochMillis AS authoredAtMs, c.committedAt.epochMillis AS committedAtMs,
       p.email AS authorEmail, a.name AS authorName, c.parentCount AS parentCount
ORDER BY c.committedAt DESC, c.sha ASC
LIMIT toInteger($limit)
`,
);

/** Every statement above, for checks that apply to all of them. */
export const ALL_STATEMENTS: readonly CypherStatement<object>[] = [
  ...SCHEMA_STATEMENTS,
  AWAIT_INDEXES,
  PING,
  UPSERT_REPOSITORY_AND_BRANCH,
  WRITE_COMMITS,
  WRITE_PARENTS,
  WRITE_AUTHORSHIP,
  WRITE_CHANGES,
  READ_BRANCH_MEMBERS,
  MARK_NO_LONGER_ON_BRANCH,
  MOVE_BRANCH_HEAD,
  REMOVE_BRANCH_HEAD,
  DELETE_REPOSITORY_COMMITS,
  DELETE_REPOSITORY_FILES,
  DELETE_REPOSITORY_BRANCHES,
  DELETE_REPOSITORY_NODE,
  READ_REPOSITORY,
  REPOSITORY_COUNTS,
  REPOSITORY_BRANCHES,
  TOP_CONTRIBUTORS,
  FILE_HISTORY,
  CO_CHANGED_FILES,
  READ_BRANCH,
  BRANCH_COMMITS,
];

/** The statements that read tenant data: each must be scoped by $tenantId. */
export const READ_STATEMENTS: readonly CypherStatement<object>[] = [
  READ_BRANCH_MEMBERS,
  READ_REPOSITORY,
  REPOSITORY_COUNTS,
  REPOSITORY_BRANCHES,
  TOP_CONTRIBUTORS,
  FILE_HISTORY,
  CO_CHANGED_FILES,
  READ_BRANCH,
  BRANCH_COMMITS,
];
