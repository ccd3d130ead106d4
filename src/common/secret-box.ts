import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { EncryptionKey } from '../config/app-config.js';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * AES-256-GCM encryption of secrets at rest. Ciphertexts are `v1:<keyId>:<base64(iv|tag|data)>` so keys can
 * rotate: new secrets use the active key, old ones stay readable while their key is configured.
 * The optional context (e.g. a repository id) is bound as additional authenticated data, so a ciphertext
 * copied onto another row does not decrypt.
 */
export class SecretBox {
  private readonly keys: Map<string, Buffer>;

  constructor(
    keys: EncryptionKey[],
    private readonly activeKeyId: string,
  ) {
    this.keys = new Map(keys.map((k) => [k.id, k.key]));
    if (!this.keys.has(activeKeyId))
      throw new Error(`active encryption key ${activeKeyId} is not configured`);
  }

  encrypt(plaintext: string, context = ''): string {
    const key = this.keys.get(this.activeKeyId)!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const payload = Buffer.concat([iv, cipher.getAuthTag(), data]).toString('base64');
    return `v1:${this.activeKeyId}:${payload}`;
  }

  decrypt(ciphertext: string, context = ''): string {
    const [version, keyId, payload] = ciphertext.split(':');
    if (version !== 'v1' || !keyId || !payload) throw new Error('unrecognised ciphertext format');
    const key = this.keys.get(keyId);
    if (!key) throw new Error(`encryption key ${keyId} is not configured`);
    const raw = Buffer.from(payload, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString(
      'utf8',
    );
  }

  /** Id of the key new ciphertexts are made with. */
  get activeKey(): string {
    return this.activeKeyId;
  }

  /** Whether the ciphertext was made with an older key and should be re-encrypted. */
  needsRotation(ciphertext: string): boolean {
    return ciphertext.split(':')[1] !== this.activeKeyId;
  }
}
