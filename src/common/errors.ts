/** What kind of failure a domain error is; the HTTP filter maps each kind to one status code. */
export type ErrorKind =
  | 'invalid'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'rate_limited'
  | 'unavailable';

export interface FieldProblem {
  field: string;
  message: string;
}

/** Base of every expected failure: a stable code, a message a user can act on, optional details. */
export abstract class DomainError extends Error {
  abstract readonly kind: ErrorKind;
  constructor(
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ValidationFailed extends DomainError {
  readonly kind = 'invalid' as const;
  constructor(message: string, problems: FieldProblem[] = []) {
    super('VALIDATION_FAILED', message, problems.length ? { fields: problems } : undefined);
  }
  static field(field: string, message: string): ValidationFailed {
    return new ValidationFailed(`${field}: ${message}`, [{ field, message }]);
  }
}

export class Unauthenticated extends DomainError {
  readonly kind = 'unauthenticated' as const;
  constructor(message: string) {
    super('UNAUTHENTICATED', message);
  }
}

export class NotFound extends DomainError {
  readonly kind = 'not_found' as const;
  constructor(resource: string, id: string) {
    super(`${resource.toUpperCase().replace(/\s+/g, '_')}_NOT_FOUND`, `${resource} ${id} was not found`);
  }
}

export class Conflict extends DomainError {
  readonly kind = 'conflict' as const;
}

export class ServiceUnavailable extends DomainError {
  readonly kind = 'unavailable' as const;
}
