/**
 * The graph index against a real Neo4j 5. Runs when NEO4J_URI is set (with NEO4J_USER, NEO4J_PASSWORD and
 * optionally NEO4J_DATABASE), e.g. after `docker compose up neo4j`:
 *   NEO4J_URI=bolt://127.0.0.1:7687 NEO4J_USER=neo4j NEO4J_PASSWORD=reposync-neo4j npm run test:integration -- test/graph
 * Each run uses fresh tenant and repository ids and removes what it wrote.
 * The closed-port tests at the end run always.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type { ParsedCommit } from '../../src/graph/git-log-parser.js';
import { GraphConnection, type GraphConnectionSettings } from '../../src/graph/graph-connection.js';
import { GraphNotIndexed, GraphUnavailable } from '../../src/graph/graph-errors.js';
import type { IndexRangeInput } from '../../src/graph/graph-index.js';
import { Neo4jGraphIndexer } from '../../src/graph/graph-indexer.js';
import { Neo4jGraphReader } from '../../src/graph/graph-reader.js';
import { ALICE, BOB, type SampleHistory, UNICODE_PATH, ZOE, buildSampleHistory } from './sample-history.js';

function neo4jSettings(): GraphConnectionSettings | null {
  const uri = process.env.NEO4J_URI;
  if (!uri) return null;
  return {
    uri,
    user: process.env.NEO4J_USER ?? 'neo4j',
    password: process.env.NEO4J_PASSWORD ?? '',
    database: process.env.NEO4J_DATABASE || null,
  };
}

const settings = neo4jSettings();
if (!settings) {
  console.log('graph integration suite skipped: NEO4J_URI is not set (docker compose up neo4j)');
}
const describeWithNeo4j = settings ? describe : describe.skip;

describeWithNeo4j('graph index on a real Neo4j', () => {
  const tenantA = `tenant-a-${randomUUID()}`;
  const tenantB = `tenant-b-${randomUUID()}`;
  const repositoryA = randomUUID();
  const repositoryB = randomUUID();
  let history: SampleHistory;
  let connection: GraphConnection;
  let indexer: Neo4jGraphIndexer;
  let reader: Neo4jGraphReader;
  let firstRange: ParsedCommit[];
  let secondRange: ParsedCommit[];

  const run = (
    tenantId: string,
    repositoryId: string,
    overrides: Partial<IndexRangeInput>,
  ): IndexRangeInput => ({
    tenantId,
    repository: { id: repositoryId, host: 'git.example.test', fullName: 'acme/sample' },
    branch: 'main',
    fromSha: null,
    toSha: history.empty,
    commits: [],
    forcePushed: false,
    ...overrides,
  });

  beforeAll(async () => {
    history = await buildSampleHistory();
    firstRange = await history.repo.log(null, history.empty);
    secondRange = await history.repo.log(history.empty, history.copyAndTypeChange);
    connection = new GraphConnection(settings!);
    // Tiny batches, so every kind of row takes several UNWIND statements.
    indexer = new Neo4jGraphIndexer(connection, { batchSize: 3 });
    reader = new Neo4jGraphReader(connection);
  });

  afterAll(async () => {
    if (indexer) {
      await indexer.removeRepository(tenantA, repositoryA).catch(() => undefined);
      await indexer.removeRepository(tenantB, repositoryB).catch(() => undefined);
    }
    await connection?.close();
    await history?.repo.destroy();
  });

  it('answers ping and ensures the schema any number of times', async () => {
    expect(await indexer.ping()).toMatchObject({ status: 'up' });
    expect(await indexer.ensureSchema()).toEqual({ status: 'ready', statements: expect.any(Number) });
    expect(await indexer.ensureSchema()).toEqual({ status: 'ready', statements: expect.any(Number) });
  });

  it('indexes a history in two ranges, reporting progress, HEAD last', async () => {
    const progress: [number, number][] = [];
    const first = await indexer.indexRange(
      run(tenantA, repositoryA, {
        commits: firstRange,
        onProgress: (done, total) => progress.push([done, total]),
      }),
    );
    expect(first).toMatchObject({
      status: 'indexed',
      headSha: history.empty,
      commits: 5,
      noLongerOnBranch: 0,
    });
    expect(progress.at(-1)![0]).toBe(progress.at(-1)![1]);
    expect(progress.map(([done]) => done)).toEqual(progress.map((_, i) => i + 1));

    const second = await indexer.indexRange(
      run(tenantA, repositoryA, {
        fromSha: history.empty,
        toSha: history.copyAndTypeChange,
        commits: secondRange,
      }),
    );
    expect(second).toMatchObject({ status: 'indexed', commits: 5 });

    const changes = [...firstRange, ...secondRange].reduce((n, c) => n + c.files.length, 0);
    expect(await reader.summary(tenantA, repositoryA)).toEqual({
      id: repositoryA,
      host: 'git.example.test',
      fullName: 'acme/sample',
      commits: 10,
      indexedCommits: 10,
      files: expect.any(Number),
      parents: 10,
      changes,
      people: 3,
      branches: [
        {
          name: 'main',
          headSha: history.copyAndTypeChange,
          deleted: false,
          commits: 10,
          noLongerOnBranch: 0,
        },
      ],
    });
  });

  it('creates no duplicates when the same ranges are indexed again', async () => {
    const before = await reader.summary(tenantA, repositoryA);
    await indexer.indexRange(run(tenantA, repositoryA, { commits: firstRange }));
    await indexer.indexRange(
      run(tenantA, repositoryA, {
        fromSha: history.empty,
        toSha: history.copyAndTypeChange,
        commits: secondRange,
      }),
    );
    expect(await reader.summary(tenantA, repositoryA)).toEqual(before);
  });

  it('lists the top contributors with the names they commit under', async () => {
    const contributors = await reader.topContributors(tenantA, repositoryA, { limit: 10 });
    expect(contributors.map((c) => [c.email, c.name, c.commits])).toEqual([
      [ALICE.email, ALICE.name, 5],
      [BOB.email.toLowerCase(), BOB.name, 3],
      [ZOE.email, ZOE.name, 2],
    ]);
    expect(contributors[0]!.lastAuthoredAt).toBe('2024-01-10T10:00:00.000Z');
    expect(contributors[0]!.firstAuthoredAt).toBe('2024-01-01T09:00:00.000Z');
    expect(await reader.topContributors(tenantA, repositoryA, { limit: 1 })).toHaveLength(1);
  });

  it("gives a file's history with authors, renames included", async () => {
    const main = await reader.fileHistory(tenantA, repositoryA, 'src/main.ts', { limit: 20 });
    expect(main.map((e) => [e.sha, e.status, e.previousPath])).toEqual([
      [history.copyAndTypeChange, 'M', null],
      [history.mainline, 'M', null],
      [history.rename, 'R', 'src/app.ts'],
    ]);
    expect(main[2]!.author).toEqual({ email: ALICE.email, name: ALICE.name });
    const unicode = await reader.fileHistory(tenantA, repositoryA, UNICODE_PATH, { limit: 20 });
    expect(unicode.map((e) => e.sha)).toEqual([history.unicode]);
    expect(unicode[0]!.author?.name).toBe(ZOE.name);
    const logo = await reader.fileHistory(tenantA, repositoryA, 'assets/logo.bin', { limit: 20 });
    expect(logo.map((e) => [e.status, e.binary, e.additions])).toEqual([
      ['D', true, null],
      ['A', true, null],
    ]);
  });

  it('finds the files most often changed together with a file', async () => {
    const together = await reader.coChangedFiles(tenantA, repositoryA, 'README.md', {
      limit: 10,
      maxFilesPerCommit: 200,
    });
    expect(together.map((f) => [f.path, f.commits])).toEqual([
      ['side.txt', 2],
      ['link-target.txt', 1],
      ['src/app.ts', 1],
    ]);
    const narrow = await reader.coChangedFiles(tenantA, repositoryA, 'README.md', {
      limit: 10,
      maxFilesPerCommit: 2,
    });
    expect(narrow.map((f) => f.path)).toEqual(['side.txt']);
  });

  it('lists the commits on a branch since a commit, like git since..branch', async () => {
    const since = await reader.branchCommits(tenantA, repositoryA, 'main', history.empty, { limit: 100 });
    expect(since.headSha).toBe(history.copyAndTypeChange);
    expect(since.commits.map((c) => c.sha)).toEqual([
      history.copyAndTypeChange,
      history.deletion,
      history.merge,
      history.mainline,
      history.side,
    ]);
    expect(since.commits[2]!.parentCount).toBe(2);
    const all = await reader.branchCommits(tenantA, repositoryA, 'main', null, { limit: 100 });
    expect(all.commits).toHaveLength(10);
    const sinceSide = await reader.branchCommits(tenantA, repositoryA, 'main', history.side, { limit: 100 });
    expect(sinceSide.commits.map((c) => c.sha)).toEqual([
      history.copyAndTypeChange,
      history.deletion,
      history.merge,
      history.mainline,
    ]);
    await expect(
      reader.branchCommits(tenantA, repositoryA, 'main', 'f'.repeat(40), { limit: 5 }),
    ).rejects.toThrow(GraphNotIndexed);
    await expect(reader.branchCommits(tenantA, repositoryA, 'nope', null, { limit: 5 })).rejects.toThrow(
      GraphNotIndexed,
    );
  });

  it('keeps tenants apart: another tenant sees nothing and cannot write into a repository it does not own', async () => {
    await expect(reader.summary(tenantB, repositoryA)).rejects.toThrow(GraphNotIndexed);
    await expect(reader.topContributors(tenantB, repositoryA, { limit: 10 })).rejects.toThrow(
      GraphNotIndexed,
    );
    await expect(reader.fileHistory(tenantB, repositoryA, 'src/main.ts', { limit: 10 })).rejects.toThrow(
      GraphNotIndexed,
    );
    await expect(
      reader.coChangedFiles(tenantB, repositoryA, 'README.md', { limit: 10, maxFilesPerCommit: 200 }),
    ).rejects.toThrow(GraphNotIndexed);
    await expect(reader.branchCommits(tenantB, repositoryA, 'main', null, { limit: 10 })).rejects.toThrow(
      GraphNotIndexed,
    );

    const before = await reader.summary(tenantA, repositoryA);
    await expect(indexer.indexRange(run(tenantB, repositoryA, { commits: firstRange }))).rejects.toThrow();
    expect(await reader.summary(tenantA, repositoryA)).toEqual(before);

    // Tenant B's own copy of the same history: same shas and emails, separate nodes.
    await indexer.indexRange(run(tenantB, repositoryB, { commits: firstRange }));
    expect(await reader.summary(tenantB, repositoryB)).toMatchObject({ commits: 5, people: 3 });
    expect((await reader.topContributors(tenantA, repositoryA, { limit: 10 }))[0]!.commits).toBe(5);
    expect(await reader.summary(tenantA, repositoryA)).toEqual(before);
  });

  it('after a force-push, marks the commits left behind instead of deleting them', async () => {
    await history.repo.checkout('main', history.empty);
    await history.repo.write('rewritten.txt', 'history was rewritten\n');
    const rewritten = await history.repo.commit('Rewritten history', {
      author: BOB,
      date: '2024-02-01T10:00:00Z',
    });
    const pushed = await history.repo.log(history.copyAndTypeChange, rewritten);
    expect(pushed.map((c) => c.sha)).toEqual([rewritten]);

    const result = await indexer.indexRange(
      run(tenantA, repositoryA, {
        fromSha: history.copyAndTypeChange,
        toSha: rewritten,
        commits: pushed,
        forcePushed: true,
      }),
    );
    expect(result).toMatchObject({ status: 'indexed', headSha: rewritten, noLongerOnBranch: 5 });
    const summary = await reader.summary(tenantA, repositoryA);
    expect(summary.commits).toBe(11);
    expect(summary.branches).toEqual([
      { name: 'main', headSha: rewritten, deleted: false, commits: 6, noLongerOnBranch: 5 },
    ]);
    const onBranch = await reader.branchCommits(tenantA, repositoryA, 'main', history.empty, { limit: 100 });
    expect(onBranch.commits.map((c) => c.sha)).toEqual([rewritten]);

    // Forced back: the five return to the branch, the rewritten commit is left behind.
    const back = await history.repo.log(rewritten, history.copyAndTypeChange);
    await indexer.indexRange(
      run(tenantA, repositoryA, {
        fromSha: rewritten,
        toSha: history.copyAndTypeChange,
        commits: back,
        forcePushed: true,
      }),
    );
    expect((await reader.summary(tenantA, repositoryA)).branches).toEqual([
      { name: 'main', headSha: history.copyAndTypeChange, deleted: false, commits: 10, noLongerOnBranch: 1 },
    ]);
  });

  it('removes the HEAD of a deleted branch and keeps its history', async () => {
    expect(
      await indexer.removeBranchHead({ tenantId: tenantA, repositoryId: repositoryA, branch: 'main' }),
    ).toEqual({
      status: 'removed',
      found: true,
    });
    expect(
      await indexer.removeBranchHead({ tenantId: tenantA, repositoryId: repositoryA, branch: 'gone' }),
    ).toEqual({
      status: 'removed',
      found: false,
    });
    const summary = await reader.summary(tenantA, repositoryA);
    expect(summary.branches).toEqual([
      { name: 'main', headSha: null, deleted: true, commits: 10, noLongerOnBranch: 1 },
    ]);
    expect(summary.commits).toBe(11);
  });

  it("removes a repository's graph", async () => {
    const removed = await indexer.removeRepository(tenantB, repositoryB);
    expect(removed.status).toBe('removed');
    await expect(reader.summary(tenantB, repositoryB)).rejects.toThrow(GraphNotIndexed);
    expect((await reader.summary(tenantA, repositoryA)).commits).toBe(11);
  });
});

describe('Neo4jGraphIndexer against a closed port', () => {
  const closed: GraphConnectionSettings = { uri: 'bolt://127.0.0.1:1', user: 'neo4j', password: 'unused' };

  it('fails ping() within 5 s with GraphUnavailable (default timeouts)', async () => {
    const indexer = Neo4jGraphIndexer.fromSettings(closed);
    const started = performance.now();
    try {
      const error = await indexer.ping().then(
        () => null,
        (e: unknown) => e,
      );
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(error).toBeInstanceOf(GraphUnavailable);
      expect(error).toMatchObject({ code: 'GRAPH_UNAVAILABLE', kind: 'unavailable' });
      expect((error as Error).message).toMatch(/unavailable: .*(connect|ECONNREFUSED)/i);
    } finally {
      await indexer.close();
    }
  });

  it('fails an index run with GraphUnavailable once its retry budget is spent, without hanging', async () => {
    const indexer = Neo4jGraphIndexer.fromSettings(closed, {
      connectionTimeoutMs: 1_000,
      connectionAcquisitionTimeoutMs: 1_000,
      maxTransactionRetryTimeMs: 1_000,
      readTimeoutMs: 1_000,
    });
    const started = performance.now();
    try {
      await expect(
        indexer.indexRange({
          tenantId: 't',
          repository: { id: randomUUID(), host: 'h', fullName: 'o/r' },
          branch: 'main',
          fromSha: null,
          toSha: 'a'.repeat(40),
          commits: [],
          forcePushed: false,
        }),
      ).rejects.toThrow(GraphUnavailable);
      expect(performance.now() - started).toBeLessThan(10_000);
    } finally {
      await indexer.close();
    }
  });
});
