import { Injectable } from '@nestjs/common';
import { PrismaService } from '../database/prisma.service.js';

/** Every encrypted column: table, column, and the row id that is part of its encryption context. */
export const ENCRYPTED_COLUMNS = [
  { table: 'Repository', column: 'accessTokenEncrypted' },
  { table: 'Repository', column: 'webhookSecretEncrypted' },
  { table: 'Connection', column: 'accessTokenEncrypted' },
  { table: 'Connection', column: 'refreshTokenEncrypted' },
  { table: 'OAuthState', column: 'codeVerifierEncrypted' },
] as const;

export type EncryptedColumn = (typeof ENCRYPTED_COLUMNS)[number];

/** Reads and swaps ciphertexts for key rotation; the names come from the fixed list above, never from input. */
@Injectable()
export class SecretRotationRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** Rows whose ciphertext was not made with `activeKeyId`, a batch at a time after `afterId`. */
  async stale(
    target: EncryptedColumn,
    activeKeyId: string,
    afterId: string,
    limit: number,
  ): Promise<{ id: string; ciphertext: string }[]> {
    return this.prisma.$queryRawUnsafe<{ id: string; ciphertext: string }[]>(
      `SELECT "id"::text AS "id", "${target.column}" AS "ciphertext" FROM "${target.table}"
       WHERE "${target.column}" IS NOT NULL AND "${target.column}" NOT LIKE $1 AND "id"::text > $2
       ORDER BY "id"::text LIMIT $3`,
      `v1:${activeKeyId}:%`,
      afterId,
      limit,
    );
  }

  /** Replaces a ciphertext if it is still the one read (a concurrent writer wins). */
  async swap(target: EncryptedColumn, id: string, from: string, to: string): Promise<boolean> {
    const count = await this.prisma.$executeRawUnsafe(
      `UPDATE "${target.table}" SET "${target.column}" = $1 WHERE "id" = $2::uuid AND "${target.column}" = $3`,
      to,
      id,
      from,
    );
    return count > 0;
  }
}
