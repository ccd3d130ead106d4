import { DomainError, type ErrorKind } from '../common/errors.js';

/** The code hosts reposync talks to. */
export type HostProvider = 'github' | 'gitlab';

const HOST_NAMES: Record<HostProvider, string> = { github: 'GitHub', gitlab: 'GitLab' };

/** Display name of a provider, for messages. */
export function hostName(provider: HostProvider): string {
  return HOST_NAMES[provider];
}

/** A failure while talking to a code host. Messages never contain tokens. */
export abstract class HostError extends DomainError {
  constructor(
    readonly provider: HostProvider,
    code: string,
    message: string,
    /** The host's HTTP status, when it answered. */
    readonly status: number | null,
    details?: unknown,
  ) {
    super(code, message, details);
  }
}

/** The host rejected the credential (revoked, expired, wrong app key): the connection needs attention. */
export class HostAuthFailed extends HostError {
  readonly kind = 'forbidden' as const;
  constructor(provider: HostProvider, message: string, status: number | null = 401) {
    super(provider, 'HOST_AUTH_FAILED', message, status);
  }
}

/** The repository, branch, hook or object does not exist on the host (or the token cannot see it). */
export class HostNotFound extends HostError {
  readonly kind = 'not_found' as const;
  constructor(
    provider: HostProvider,
    message: string,
    /** The host's own message (e.g. GitHub's "Branch not found"), to tell apart what was missing. */
    readonly hostMessage: string | null = null,
  ) {
    super(provider, 'HOST_NOT_FOUND', message, 404);
  }
}

/** The token's API budget is spent or the host asked us to back off; retry after `retryAfterMs`. */
export class HostRateLimited extends HostError {
  readonly kind = 'rate_limited' as const;
  constructor(
    provider: HostProvider,
    readonly retryAfterMs: number,
    message: string,
    status: number | null = null,
  ) {
    super(provider, 'HOST_RATE_LIMITED', message, status, { retryAfterMs });
  }
}

/** The host could not be reached, timed out or answered 5xx: transient, retry later. */
export class HostUnavailable extends HostError {
  readonly kind = 'unavailable' as const;
  constructor(provider: HostProvider, message: string, status: number | null = null) {
    super(provider, 'HOST_UNAVAILABLE', message, status);
  }
}

/** The host refused the request for another reason (validation, permissions, conflict). */
export class HostRequestFailed extends HostError {
  readonly kind: ErrorKind;
  constructor(provider: HostProvider, status: number, message: string) {
    super(provider, 'HOST_REQUEST_FAILED', message, status);
    this.kind = status === 409 || status === 422 ? 'conflict' : status === 403 ? 'forbidden' : 'unavailable';
  }
}
