import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { PrismaClient } from '../generated/prisma/client.js';

/** pg pool settings from a URL (the 7.x adapter wants an object, not a connection string). */
export function poolConfigFromUrl(url: string, max: number) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: u.port ? Number(u.port) : 5432,
    user: decodeURIComponent(u.username) || undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || undefined,
    max,
    connectionTimeoutMillis: 5000,
  };
}

/**
 * The Prisma client, and the pg pool its adapter runs on. Only `*.repository.ts` files may inject it.
 * `pool` is for the few hot-path statements where Prisma's per-query overhead (about 1 ms of CPU) would
 * dominate: they share the same `DATABASE_POOL_SIZE` connections instead of opening more.
 */
@Injectable()
export class PrismaService extends PrismaClient implements OnModuleDestroy {
  readonly pool: pg.Pool;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    const pool = new pg.Pool(poolConfigFromUrl(config.database.url, config.database.poolSize));
    // An idle connection dropped by the server must not crash the process; the pool replaces it.
    const logger = new Logger(PrismaService.name);
    pool.on('error', (e) => logger.warn({ err: e.message }, 'idle database connection failed'));
    super({ adapter: new PrismaPg(pool) });
    this.pool = pool;
  }

  async onModuleDestroy(): Promise<void> {
    await this.$disconnect();
    if (!this.pool.ending) await this.pool.end();
  }
}
