import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { NestFactory } from '@nestjs/core';
import { Module } from '@nestjs/common';
import { ConfigError, loadConfigFromProcess } from '../config/app-config.js';
import { ConfigModule } from '../config/config.module.js';
import { DatabaseModule } from '../database/database.module.js';
import { TenancyRepository } from '../tenancy/tenancy.repository.js';
import { TenancyService } from '../tenancy/tenancy.service.js';

/** Operator CLI: creates a tenant and prints its first API key (shown once). */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { name: { type: 'string' }, slug: { type: 'string' }, 'key-name': { type: 'string' } },
  });
  if (!values.name || !values.slug || !/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(values.slug)) {
    console.error('usage: npm run tenant:create -- --name "Acme Inc." --slug acme [--key-name ci]');
    console.error('  slug: 1-63 lowercase letters, digits or dashes');
    process.exit(2);
  }
  const config = await loadConfigFromProcess();

  @Module({
    imports: [ConfigModule.forRoot(config), DatabaseModule],
    providers: [TenancyRepository, TenancyService],
  })
  class CliModule {}

  const app = await NestFactory.createApplicationContext(CliModule, { logger: ['error'] });
  try {
    const created = await app.get(TenancyService).createTenant(values.name, values.slug, values['key-name']);
    console.log(
      JSON.stringify(
        { tenantId: created.tenant.id, slug: created.tenant.slug, apiKey: created.plaintextKey },
        null,
        2,
      ),
    );
    console.error('Store the API key now: it is not shown again.');
  } finally {
    await app.close();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof ConfigError ? e.message : e instanceof Error ? e.message : e);
  process.exit(1);
});
