/**
 * The HTTP layer under @gitbeaker/rest's resource classes. Gitbeaker's own requester retries 429 and 502
 * ten times within a fraction of a second and reads binary blobs as text; this one sends each request
 * once through the budgeted fetch (which turns rate limits into HostRateLimited), returns non-JSON bodies
 * as Blobs, and throws GitLabHttpError for any other non-2xx answer.
 */
import type { Projects } from '@gitbeaker/rest';
import type { FetchFunction } from './host-budget.js';

type ResourceOptions = NonNullable<ConstructorParameters<typeof Projects>[0]>;
/** Gitbeaker's `requesterFn` option, derived from its public constructor type. */
export type GitlabRequesterFn = NonNullable<ResourceOptions['requesterFn']>;
type Requester = ReturnType<GitlabRequesterFn>;
type RequestOptions = NonNullable<Parameters<Requester['get']>[1]>;

interface FormattedResponse<T> {
  body: T;
  headers: Record<string, string>;
  status: number;
}

/** A non-2xx answer from GitLab, with GitLab's own message (e.g. `404 Branch Not Found`). */
export class GitLabHttpError extends Error {
  constructor(
    readonly status: number,
    readonly hostMessage: string | null,
    readonly method: string,
    readonly endpoint: string,
  ) {
    super(`GitLab answered ${status} to ${method} ${endpoint}${hostMessage ? `: ${hostMessage}` : ''}`);
    this.name = 'GitLabHttpError';
  }
}

/** `pushEvents` -> `push_events`, as GitLab's API spells parameters. */
function snakeCase(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

/** Query string in GitLab's conventions (snake_case names, `name[]=` for arrays). */
function queryString(params: Record<string, unknown> | undefined): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) {
    if (value === undefined || value === null) continue;
    const name = snakeCase(key);
    for (const item of Array.isArray(value) ? (value as unknown[]) : [value]) {
      const text = typeof item === 'object' && item !== null ? JSON.stringify(item) : String(item);
      search.append(Array.isArray(value) ? `${name}[]` : name, text);
    }
  }
  return search.toString();
}

function jsonBody(body: Record<string, unknown>): string {
  return JSON.stringify(
    Object.fromEntries(Object.entries(body).map(([key, value]) => [snakeCase(key), value])),
  );
}

function messageOf(text: string): string | null {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed === 'object' && parsed !== null) {
      const record = parsed as Record<string, unknown>;
      const message = record.message ?? record.error_description ?? record.error;
      if (typeof message === 'string') return message;
      if (message !== undefined) return JSON.stringify(message);
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.trim().slice(0, 300) || null;
}

/** A gitbeaker requester that sends every request once through `fetchFn`. */
export function createGitlabRequester(fetchFn: FetchFunction): GitlabRequesterFn {
  return (resource: Parameters<GitlabRequesterFn>[0]) => {
    const base = resource.url.endsWith('/') ? resource.url : `${resource.url}/`;
    const send = async <T>(
      method: string,
      endpoint: string,
      options?: RequestOptions,
    ): Promise<FormattedResponse<T>> => {
      const url = new URL(endpoint, base);
      url.search = queryString(options?.searchParams);
      const headers: Record<string, string> = { ...resource.headers };
      for (const [name, value] of Object.entries(resource.authHeaders)) headers[name] = await value();
      let body: string | FormData | undefined;
      if (options?.body instanceof FormData) body = options.body;
      else if (options?.body && Object.keys(options.body).length > 0) {
        body = jsonBody(options.body);
        headers['content-type'] = 'application/json';
      }
      const response = await fetchFn(url, { method, headers, body, signal: options?.signal });
      const responseHeaders = Object.fromEntries(response.headers.entries());
      if (!response.ok) {
        throw new GitLabHttpError(response.status, messageOf(await response.text()), method, endpoint);
      }
      const contentType = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
      let parsed: unknown;
      if (response.status === 204) parsed = null;
      else if (contentType === 'application/json') parsed = (await response.json()) ?? {};
      else parsed = await response.blob();
      // The resource method's declared schema; GitLab's JSON is trusted to have that shape.
      return { body: parsed as T, headers: responseHeaders, status: response.status };
    };
    return {
      get: (endpoint, options) => send('GET', endpoint, options),
      post: (endpoint, options) => send('POST', endpoint, options),
      put: (endpoint, options) => send('PUT', endpoint, options),
      patch: (endpoint, options) => send('PATCH', endpoint, options),
      delete: (endpoint, options) => send('DELETE', endpoint, options),
    };
  };
}
