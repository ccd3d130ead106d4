import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { CryptoModule } from '../common/crypto.module.js';
import { SecretRotation } from '../common/secret-rotation.js';
import { SecretRotationRepository } from '../common/secret-rotation.repository.js';
import { ConfigError, loadConfigFromProcess } from '../config/app-config.js';
import { ConfigModule } from '../config/config.module.js';
import { DatabaseModule } from '../database/database.module.js';

/**
 * Operator CLI: re-encrypts every secret at rest with the active key (ENCRYPTION_ACTIVE_KEY_ID, else the
 * last of ENCRYPTION_KEYS). Rotation: add the new key, make it active, deploy, run this, then remove the
 * old key. Safe to re-run and to run while the service is up.
 */
async function main(): Promise<void> {
  const config = await loadConfigFromProcess();

  @Module({
    imports: [ConfigModule.forRoot(config), DatabaseModule, CryptoModule],
    providers: [SecretRotationRepository, SecretRotation],
  })
  class CliModule {}

  const app = await NestFactory.createApplicationContext(CliModule, { logger: ['error'] });
  try {
    const reports = await app.get(SecretRotation).rotateAll();
    console.log(JSON.stringify({ activeKeyId: config.encryption.activeKeyId, columns: reports }, null, 2));
  } finally {
    await app.close();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof ConfigError ? e.message : e instanceof Error ? e.message : e);
  process.exit(1);
});
