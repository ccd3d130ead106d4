import { ValidationFailed } from './errors.js';

/** Position in a list ordered by (createdAt desc, id desc): stable when rows are inserted meanwhile. */
export interface Cursor {
  createdAt: Date;
  id: string;
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt.toISOString(), cursor.id]), 'utf8').toString(
    'base64url',
  );
}

export function decodeCursor(raw: string): Cursor {
  try {
    const value: unknown = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
    if (Array.isArray(value) && typeof value[0] === 'string' && typeof value[1] === 'string') {
      const createdAt = new Date(value[0]);
      if (!Number.isNaN(createdAt.getTime())) return { createdAt, id: value[1] };
    }
  } catch {
    // fall through to the validation error
  }
  throw ValidationFailed.field(
    'cursor',
    'is not a cursor returned by this API; pass nextCursor from the previous page',
  );
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
