import { describe, expect, it } from '@jest/globals';
import { generateApiKey, parseApiKey, secretMatches, tokensEqual } from './api-key-secret.js';

describe('API key secrets', () => {
  it('generates keys whose secret only the holder can present', () => {
    const key = generateApiKey();
    const parsed = parseApiKey(key.plaintext);
    expect(parsed?.prefix).toBe(key.prefix);
    expect(secretMatches(parsed!.secret, key.secretHash)).toBe(true);
    expect(
      secretMatches(
        parsed!.secret.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')),
        key.secretHash,
      ),
    ).toBe(false);
    expect(key.secretHash).not.toContain(parsed!.secret);
    expect(generateApiKey().plaintext).not.toBe(key.plaintext);
  });

  it('rejects malformed keys', () => {
    for (const bad of [
      '',
      'rsk_',
      'Bearer x',
      'rsk_zzzzzzzzzzzz_' + 'a'.repeat(43),
      'rsk_0123456789ab_short',
    ]) {
      expect(parseApiKey(bad)).toBeNull();
    }
  });

  it('compares tokens of different lengths without throwing', () => {
    expect(tokensEqual('abc', 'abc')).toBe(true);
    expect(tokensEqual('abc', 'abcd')).toBe(false);
  });
});
