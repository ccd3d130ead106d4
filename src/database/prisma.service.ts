import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
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

/** The Prisma client. Only `*.repository.ts` files may inject it. */
@Injectable()
export class PrismaService extends PrismaClient implements OnModuleDestroy {
  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    super({ adapter: new PrismaPg(poolConfigFromUrl(config.database.url, config.database.poolSize)) });
  }

  async onModuleDestroy(): Promise<void> {
    await this.$disconnect();
  }
}
