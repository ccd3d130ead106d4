import { Controller, Get, Inject, Module, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { DatabaseHealthRepository } from '../database/database-health.repository.js';
import { GRAPH_INDEX, type GraphIndex } from '../graph/graph-index.js';
import { RedisService } from '../redis/redis.service.js';
import { Public } from '../tenancy/auth.decorators.js';

type Check = { status: 'up' } | { status: 'down'; error: string };

async function check(probe: () => Promise<void>, timeoutMs: number): Promise<Check> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { status: 'up' };
  } catch (e) {
    return { status: 'down', error: e instanceof Error ? e.message.split('\n')[0]! : String(e) };
  } finally {
    clearTimeout(timer);
  }
}

@ApiTags('health')
@Public()
@Controller('health')
export class HealthController {
  constructor(
    private readonly database: DatabaseHealthRepository,
    private readonly redis: RedisService,
    @Inject(GRAPH_INDEX) private readonly graph: GraphIndex,
  ) {}

  /** The process is up (for liveness probes: no dependency is checked). */
  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /**
   * Ready to serve: Postgres and Redis answer (503 names the dependency that does not). The graph is
   * optional and reported beside them (disabled, up or unavailable) without making the service unready.
   */
  @Get('ready')
  async ready(@Res({ passthrough: true }) reply: FastifyReply) {
    const [postgres, redis, graph] = await Promise.all([
      check(() => this.database.ping(), 2000),
      check(() => this.redis.ping(2000), 2500),
      this.graphCheck(),
    ]);
    const ok = postgres.status === 'up' && redis.status === 'up';
    void reply.status(ok ? 200 : 503);
    return { status: ok ? 'ok' : 'unavailable', checks: { postgres, redis }, graph };
  }

  private async graphCheck(): Promise<{ status: 'disabled' | 'up' | 'unavailable'; error?: string }> {
    if (!this.graph.enabled) return { status: 'disabled' };
    const result = await check(async () => {
      await this.graph.ping();
    }, 3000);
    return result.status === 'up' ? { status: 'up' } : { status: 'unavailable', error: result.error };
  }
}

@Module({ controllers: [HealthController], providers: [DatabaseHealthRepository] })
export class HealthModule {}
