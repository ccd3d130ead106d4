import { randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { SecretBox } from './secret-box.js';

const k1 = { id: 'k1', key: randomBytes(32) };
const k2 = { id: 'k2', key: randomBytes(32) };

describe('SecretBox', () => {
  it('round-trips and never produces the same ciphertext twice', () => {
    const box = new SecretBox([k1], 'k1');
    const a = box.encrypt('ghp_secret', 'repo:1');
    const b = box.encrypt('ghp_secret', 'repo:1');
    expect(a).not.toBe(b);
    expect(a).not.toContain('ghp_secret');
    expect(a.startsWith('v1:k1:')).toBe(true);
    expect(box.decrypt(a, 'repo:1')).toBe('ghp_secret');
  });

  it('refuses a ciphertext moved to another context or tampered with', () => {
    const box = new SecretBox([k1], 'k1');
    const c = box.encrypt('token', 'repo:1');
    expect(() => box.decrypt(c, 'repo:2')).toThrow();
    const raw = Buffer.from(c.split(':')[2]!, 'base64');
    raw[raw.length - 1]! ^= 1;
    expect(() => box.decrypt(`v1:k1:${raw.toString('base64')}`, 'repo:1')).toThrow();
  });

  it('rotates: old ciphertexts stay readable, new ones use the active key', () => {
    const old = new SecretBox([k1], 'k1').encrypt('token');
    const rotated = new SecretBox([k1, k2], 'k2');
    expect(rotated.decrypt(old)).toBe('token');
    expect(rotated.needsRotation(old)).toBe(true);
    const fresh = rotated.encrypt('token');
    expect(fresh.startsWith('v1:k2:')).toBe(true);
    expect(rotated.needsRotation(fresh)).toBe(false);
    expect(() => new SecretBox([k2], 'k2').decrypt(old)).toThrow(/k1 is not configured/);
  });
});
