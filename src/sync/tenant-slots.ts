import type { Redis } from 'ioredis';

/**
 * A per-tenant cap on running syncs across all workers: a Redis sorted set per tenant whose members are
 * job ids scored by lease expiry. Expired members (a worker that died) free their slot by themselves.
 */
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0`;

export class TenantSlots {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly capacity: number,
    private readonly leaseMs: number,
  ) {}

  private key(tenantId: string): string {
    return `${this.prefix}:tenant-slots:${tenantId}`;
  }

  /** Takes (or renews) a slot for the job; false when the tenant is at its cap. */
  async acquire(tenantId: string, jobId: string): Promise<boolean> {
    const now = Date.now();
    const result = await this.redis.eval(
      ACQUIRE,
      1,
      this.key(tenantId),
      String(now),
      String(this.capacity),
      jobId,
      String(now + this.leaseMs),
      String(this.leaseMs * 2),
    );
    return result === 1;
  }

  async release(tenantId: string, jobId: string): Promise<void> {
    await this.redis.zrem(this.key(tenantId), jobId);
  }
}
