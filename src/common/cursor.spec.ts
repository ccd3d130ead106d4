import { describe, expect, it } from '@jest/globals';
import { decodeCursor, encodeCursor } from './cursor.js';
import { ValidationFailed } from './errors.js';

describe('cursor', () => {
  it('round-trips', () => {
    const cursor = { createdAt: new Date('2026-01-02T03:04:05.678Z'), id: 'abc' };
    expect(decodeCursor(encodeCursor(cursor))).toEqual(cursor);
  });

  it.each([
    'garbage',
    Buffer.from('[1,2]').toString('base64url'),
    Buffer.from('["nope","x"]').toString('base64url'),
  ])('rejects %s with a validation error naming the cursor', (raw) => {
    expect(() => decodeCursor(raw)).toThrow(ValidationFailed);
  });
});
