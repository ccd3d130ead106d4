import { describe, expect, it } from '@jest/globals';
import { gitBlobId } from './blob-integrity.js';
import { GitHubHost } from './github-host.js';
import { GitLabHost } from './gitlab-host.js';
import type { FetchFunction, HostApiBudget } from './host-budget.js';
import { HostRequestFailed, HostUnavailable } from './host-errors.js';

// The per-token budget needs Redis; these tests only look at one request and its answer.
const NO_BUDGET = { fetchFor: (_provider: string, _token: string, fetch: FetchFunction) => fetch };
const budget = NO_BUDGET as unknown as HostApiBudget;

function jsonAnswer(body: unknown, requests: string[]): FetchFunction {
  return async (input) => {
    requests.push(input instanceof Request ? input.url : String(input));
    return new Response(JSON.stringify(body), {
      status: 200,
      headers: { 'content-type': 'application/json' },
    });
  };
}

const CONTENT = Buffer.from('#!/bin/sh\necho hi\n');
const SHA = gitBlobId(CONTENT);

describe('getFileAtRef', () => {
  it('GitLab: reads the repository files API at the ref and checks the content against blob_id', async () => {
    const requests: string[] = [];
    const answer = {
      content: CONTENT.toString('base64'),
      encoding: 'base64',
      blob_id: SHA,
      file_path: 'bin/run',
    };
    const host = new GitLabHost({
      baseUrl: 'https://gitlab.test',
      budget,
      fetch: jsonAnswer(answer, requests),
    });

    const file = await host.getFileAtRef('token', 'group/sub', 'project', 'bin/run', 'c'.repeat(40));

    expect(file).toEqual({ content: CONTENT, blobSha: SHA });
    expect(requests).toEqual([
      `https://gitlab.test/api/v4/projects/group%2Fsub%2Fproject/repository/files/bin%2Frun?ref=${'c'.repeat(40)}`,
    ]);
    const lying = new GitLabHost({
      baseUrl: 'https://gitlab.test',
      budget,
      fetch: jsonAnswer({ ...answer, blob_id: 'f'.repeat(40) }, []),
    });
    await expect(lying.getFileAtRef('token', 'group', 'project', 'bin/run', 'main')).rejects.toThrow(
      HostUnavailable,
    );
  });

  it('GitHub: reads the contents API and refuses a symlink GitHub resolved to its target', async () => {
    const requests: string[] = [];
    const answer = {
      type: 'file',
      path: 'bin/run',
      sha: SHA,
      encoding: 'base64',
      content: CONTENT.toString('base64'),
    };
    const host = new GitHubHost({
      apiBaseUrl: 'https://github.test',
      budget,
      fetch: jsonAnswer(answer, requests),
    });

    expect(await host.getFileAtRef('token', 'owner', 'repo', 'bin/run', 'main')).toEqual({
      content: CONTENT,
      blobSha: SHA,
    });
    expect(requests[0]).toMatch(
      /^https:\/\/github\.test\/repos\/owner\/repo\/contents\/bin(\/|%2F)run\?ref=main$/,
    );

    const resolved = new GitHubHost({
      apiBaseUrl: 'https://github.test',
      budget,
      fetch: jsonAnswer({ ...answer, path: 'bin/real' }, []),
    });
    await expect(resolved.getFileAtRef('token', 'owner', 'repo', 'bin/run', 'main')).rejects.toThrow(
      HostRequestFailed,
    );
  });
});
