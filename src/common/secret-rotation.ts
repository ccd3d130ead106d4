/**
 * Key rotation for secrets at rest: after a new key is added to ENCRYPTION_KEYS and made active, this
 * re-encrypts every ciphertext made with an older key, so the old key can then be removed.
 */
import { Injectable, Logger } from '@nestjs/common';
import { connectionTokenContext, oauthVerifierContext } from '../connections/connections.types.js';
import { repositoryTokenContext } from '../repositories/repositories.service.js';
import { webhookSecretContext } from '../webhooks/webhook-signature.js';
import { SecretBox } from './secret-box.js';
import {
  ENCRYPTED_COLUMNS,
  type EncryptedColumn,
  SecretRotationRepository,
} from './secret-rotation.repository.js';

const CONTEXTS: Record<string, (id: string) => string> = {
  'Repository.accessTokenEncrypted': repositoryTokenContext,
  'Repository.webhookSecretEncrypted': webhookSecretContext,
  'Connection.accessTokenEncrypted': (id) => connectionTokenContext(id, 'access'),
  'Connection.refreshTokenEncrypted': (id) => connectionTokenContext(id, 'refresh'),
  'OAuthState.codeVerifierEncrypted': oauthVerifierContext,
};

export interface RotationReport {
  column: string;
  reencrypted: number;
  /** Rows another writer changed meanwhile (already current). */
  skipped: number;
}

@Injectable()
export class SecretRotation {
  private readonly logger = new Logger(SecretRotation.name);

  constructor(
    private readonly rows: SecretRotationRepository,
    private readonly secrets: SecretBox,
  ) {}

  /** Re-encrypts every stale ciphertext with the active key; safe to re-run and to run beside the service. */
  async rotateAll(batch = 200): Promise<RotationReport[]> {
    const reports: RotationReport[] = [];
    for (const target of ENCRYPTED_COLUMNS) reports.push(await this.rotate(target, batch));
    return reports;
  }

  private async rotate(target: EncryptedColumn, batch: number): Promise<RotationReport> {
    const name = `${target.table}.${target.column}`;
    const context = CONTEXTS[name]!;
    const report: RotationReport = { column: name, reencrypted: 0, skipped: 0 };
    let after = '';
    for (;;) {
      const rows = await this.rows.stale(target, this.secrets.activeKey, after, batch);
      if (rows.length === 0) break;
      for (const row of rows) {
        const plaintext = this.secrets.decrypt(row.ciphertext, context(row.id));
        const swapped = await this.rows.swap(
          target,
          row.id,
          row.ciphertext,
          this.secrets.encrypt(plaintext, context(row.id)),
        );
        if (swapped) report.reencrypted++;
        else report.skipped++;
      }
      after = rows[rows.length - 1]!.id;
    }
    this.logger.log(report, 'secrets re-encrypted');
    return report;
  }
}
