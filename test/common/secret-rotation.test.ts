import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { SecretBox } from '../../src/common/secret-box.js';
import { SecretRotation } from '../../src/common/secret-rotation.js';
import { SecretRotationRepository } from '../../src/common/secret-rotation.repository.js';
import { PrismaService } from '../../src/database/prisma.service.js';
import { repositoryTokenContext } from '../../src/repositories/repositories.service.js';
import { webhookSecretContext } from '../../src/webhooks/webhook-signature.js';
import { ApiHarness, type TestTenant } from '../support/api-harness.js';

describe('re-encrypting secrets at rest with a new key', () => {
  const oldKey = { id: 'old', key: randomBytes(32) };
  const newKey = { id: 'new', key: randomBytes(32) };
  let api: ApiHarness;
  let tenant: TestTenant;
  let db: pg.Client;
  let prisma: PrismaService;

  beforeAll(async () => {
    api = await ApiHarness.start({
      ALLOW_INSECURE_REPOSITORY_URLS: 'true',
      ENCRYPTION_KEYS: `old:${oldKey.key.toString('base64')}`,
    });
    tenant = await api.createTenant('rotation');
    db = new pg.Client({ connectionString: api.config.database.url });
    await db.connect();
    prisma = new PrismaService(api.config);
  });

  afterAll(async () => {
    await prisma.$disconnect();
    await db.end();
    await api.stop();
  });

  it('moves every ciphertext to the active key, keeps the plaintext, and is a no-op when re-run', async () => {
    const tokens: string[] = [];
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const token = `secret-token-${i}-${randomBytes(8).toString('hex')}`;
      const created = await api.request<{ id: string }>('POST', '/repositories', {
        token: tenant.apiKey,
        body: { url: `http://127.0.0.1:9/acme/rotation-${i}.git`, accessToken: token },
      });
      expect(created.status).toBe(201);
      tokens.push(token);
      ids.push(created.body.id);
    }
    const hook = await api.request<{ secret: string }>('POST', `/repositories/${ids[0]}/webhook`, {
      token: tenant.apiKey,
    });
    expect(hook.status).toBe(201);

    const rotation = new SecretRotation(
      new SecretRotationRepository(prisma),
      new SecretBox([oldKey, newKey], 'new'),
    );
    const reports = await rotation.rotateAll(2);
    const byColumn = Object.fromEntries(reports.map((r) => [r.column, r.reencrypted]));
    expect(byColumn['Repository.accessTokenEncrypted']).toBe(3);
    expect(byColumn['Repository.webhookSecretEncrypted']).toBe(1);

    // Only the new key is needed from now on.
    const newOnly = new SecretBox([newKey], 'new');
    const { rows } = await db.query<{ id: string; token: string; hook: string | null }>(
      'SELECT "id", "accessTokenEncrypted" AS "token", "webhookSecretEncrypted" AS "hook" FROM "Repository" WHERE "id" = ANY($1)',
      [ids],
    );
    for (const row of rows) {
      expect(row.token.startsWith('v1:new:')).toBe(true);
      expect(newOnly.decrypt(row.token, repositoryTokenContext(row.id))).toBe(tokens[ids.indexOf(row.id)]);
      if (row.id === ids[0])
        expect(newOnly.decrypt(row.hook!, webhookSecretContext(row.id))).toBe(hook.body.secret);
    }
    const again = await rotation.rotateAll();
    expect(again.every((r) => r.reencrypted === 0)).toBe(true);
  });
});
