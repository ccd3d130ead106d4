import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { sign } from '@octokit/webhooks-methods';

const require = createRequire(import.meta.url);

interface ExampleGroup {
  name: string;
  examples: Record<string, unknown>[];
}

const githubExamples = require('@octokit/webhooks-examples/api.github.com/index.json') as ExampleGroup[];

/** A real GitHub example payload of an event (from @octokit/webhooks-examples), deep-copied. */
export function githubExample(
  event: string,
  match?: (p: Record<string, unknown>) => boolean,
): Record<string, unknown> {
  const group = githubExamples.find((g) => g.name === event);
  const example = group?.examples.find((p) => (match ? match(p) : true));
  if (!example) throw new Error(`no GitHub example for ${event}`);
  return structuredClone(example);
}

/** The push example pointed at one of our repositories, branch and commit. */
export function githubPush(
  fullName: string,
  branch: string,
  before: string,
  after: string,
): Record<string, unknown> {
  const payload = githubExample('push', (p) => typeof p.ref === 'string' && p.ref.startsWith('refs/heads/'));
  payload.ref = `refs/heads/${branch}`;
  payload.before = before;
  payload.after = after;
  payload.deleted = false;
  payload.created = false;
  const repository = payload.repository as Record<string, unknown>;
  repository.full_name = fullName;
  repository.name = fullName.split('/').pop();
  return payload;
}

/** Signs a body the way GitHub does (X-Hub-Signature-256). */
export async function githubSignature(secret: string, body: string): Promise<string> {
  return sign(secret, body);
}

/** GitLab's documented push payload pointed at one of our repositories. */
export function gitlabPush(pathWithNamespace: string, branch: string, before: string, after: string) {
  const payload = JSON.parse(
    readFileSync(new URL('../fixtures/gitlab/push-hook.json', import.meta.url), 'utf8'),
  ) as Record<string, unknown> & { project: Record<string, unknown> };
  payload.ref = `refs/heads/${branch}`;
  payload.before = before;
  payload.after = after;
  payload.checkout_sha = after;
  payload.project.path_with_namespace = pathWithNamespace;
  return payload;
}
