/**
 * Per-token API budget shared by every process through Redis, so workers back off instead of hammering a
 * host: the last rate-limit headers seen for a token (remaining calls, reset time), a block set by a 429
 * or a rate-limit 403, and a cap on concurrent requests per token. Keys are the SHA-256 of the token,
 * never the token itself; every key expires by itself, and a slot of a crashed process frees when its
 * lease runs out.
 *
 * Hosts use it as a `fetch`: `budget.fetchFor('github', token)` is handed to Octokit, the GitHub App
 * authenticator, the OAuth calls and the GitLab requester, so every request goes through it.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type HostProvider, HostRateLimited, hostName } from './host-errors.js';

export type FetchFunction = typeof globalThis.fetch;

/** A fetch with a time limit per request; a caller's own signal wins. */
export function fetchWithTimeout(base: FetchFunction, timeoutMs: number): FetchFunction {
  return (input, init) => base(input, { ...init, signal: init?.signal ?? AbortSignal.timeout(timeoutMs) });
}

export interface HostApiBudgetOptions {
  redis: Redis;
  /** Namespace of every key (e.g. the deployment's queue prefix, or a test's own prefix). */
  keyPrefix: string;
  /** Concurrent requests allowed per token across all processes (default 4). */
  maxConcurrentPerToken?: number;
  /** A slot not released within this time is freed (a crashed process); default 2 minutes. */
  slotLeaseMs?: number;
  /** How long a request waits for a free slot before giving up with HostRateLimited (default 30 s). */
  acquireTimeoutMs?: number;
  /** Back-off after a 429 (or rate-limit 403) that does not say how long to wait (default 60 s). */
  defaultBackoffMs?: number;
  now?: () => number;
  /** Called when Redis fails; the request then proceeds without the budget (fail open). */
  onRedisError?: (error: unknown) => void;
}

/** What the budget knows about one token, for tests, metrics and the admin view. */
export interface HostBudgetSnapshot {
  remaining: number | null;
  resetAt: Date | null;
  blockedUntil: Date | null;
  inFlight: number;
}

// KEYS: state hash, slots sorted set. ARGV: now, capacity, lease id, lease expiry, slots ttl.
const ACQUIRE = `
local now = tonumber(ARGV[1])
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blockedUntil') or '0')
if blocked > now then return {'blocked', tostring(blocked)} end
local remaining = redis.call('HGET', KEYS[1], 'remaining')
local resetAt = tonumber(redis.call('HGET', KEYS[1], 'resetAt') or '0')
if remaining and tonumber(remaining) <= 0 and resetAt > now then return {'exhausted', tostring(resetAt)} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return {'busy', '0'} end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if remaining and resetAt > now then redis.call('HINCRBY', KEYS[1], 'remaining', -1) end
return {'ok', '0'}`;

// KEYS: state hash. ARGV: now, remaining, reset at (ms), block until (ms) ('' = not given), ttl after.
const OBSERVE = `
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'remaining', ARGV[2], 'resetAt', ARGV[3]) end
if ARGV[4] ~= '' then
  local current = tonumber(redis.call('HGET', KEYS[1], 'blockedUntil') or '0')
  if tonumber(ARGV[4]) > current then redis.call('HSET', KEYS[1], 'blockedUntil', ARGV[4]) end
end
local resetAt = tonumber(redis.call('HGET', KEYS[1], 'resetAt') or '0')
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blockedUntil') or '0')
redis.call('PEXPIREAT', KEYS[1], math.max(resetAt, blocked, tonumber(ARGV[1])) + tonumber(ARGV[5]))
return 1`;

const STATE_TTL_AFTER_MS = 60_000;
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

interface Lease {
  release(): Promise<void>;
}

/** Remaining calls and reset time from GitHub (`x-ratelimit-*`) or GitLab (`ratelimit-*`) headers. */
export function readRateLimitHeaders(headers: Headers): { remaining: number; resetAtMs: number } | null {
  const remaining = headers.get('x-ratelimit-remaining') ?? headers.get('ratelimit-remaining');
  const reset = headers.get('x-ratelimit-reset') ?? headers.get('ratelimit-reset');
  if (remaining === null || reset === null) return null;
  const remainingCount = Number(remaining);
  const resetSeconds = Number(reset);
  if (!Number.isFinite(remainingCount) || !Number.isFinite(resetSeconds)) return null;
  return { remaining: remainingCount, resetAtMs: resetSeconds * 1000 };
}

/** `Retry-After` as milliseconds from now (delay-seconds or an HTTP date), or null. */
export function readRetryAfterMs(headers: Headers, now: number): number | null {
  const value = headers.get('retry-after');
  if (value === null || value.trim() === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

export class HostApiBudget {
  private readonly redis: Redis;
  private readonly keyPrefix: string;
  private readonly capacity: number;
  private readonly slotLeaseMs: number;
  private readonly acquireTimeoutMs: number;
  private readonly defaultBackoffMs: number;
  private readonly now: () => number;
  private readonly onRedisError: (error: unknown) => void;

  constructor(opts: HostApiBudgetOptions) {
    this.redis = opts.redis;
    this.keyPrefix = opts.keyPrefix;
    this.capacity = opts.maxConcurrentPerToken ?? 4;
    this.slotLeaseMs = opts.slotLeaseMs ?? 120_000;
    this.acquireTimeoutMs = opts.acquireTimeoutMs ?? 30_000;
    this.defaultBackoffMs = opts.defaultBackoffMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.onRedisError = opts.onRedisError ?? (() => undefined);
  }

  /**
   * A fetch that spends `credential`'s budget: refuses (HostRateLimited) while the token is blocked or
   * exhausted, waits for one of its concurrency slots, records the rate-limit headers of the answer, and
   * turns a 429 or rate-limit 403 into HostRateLimited after recording the block.
   */
  fetchFor(
    provider: HostProvider,
    credential: string,
    baseFetch: FetchFunction = globalThis.fetch,
  ): FetchFunction {
    const hash = createHash('sha256').update(credential).digest('hex');
    return async (input, init) => {
      const lease = await this.acquire(provider, hash);
      try {
        const response = await baseFetch(input, init);
        // Read the whole body while holding the slot: the request is not over before its body is.
        const body = NULL_BODY_STATUSES.has(response.status) ? null : await response.arrayBuffer();
        await this.observe(provider, hash, response.status, response.headers, body);
        return new Response(body, {
          status: response.status,
          statusText: response.statusText,
          headers: response.headers,
        });
      } finally {
        await lease.release();
      }
    };
  }

  /** What the budget currently records for a credential. */
  async snapshot(credential: string): Promise<HostBudgetSnapshot> {
    const hash = createHash('sha256').update(credential).digest('hex');
    const [state, inFlight] = await Promise.all([
      this.redis.hgetall(this.stateKey(hash)),
      this.redis.zcount(this.slotsKey(hash), this.now(), '+inf'),
    ]);
    const number = (value: string | undefined): number | null =>
      value === undefined || value === '' ? null : Number(value);
    const date = (value: string | undefined): Date | null => {
      const n = number(value);
      return n === null || n === 0 ? null : new Date(n);
    };
    return {
      remaining: number(state.remaining),
      resetAt: date(state.resetAt),
      blockedUntil: date(state.blockedUntil),
      inFlight,
    };
  }

  private stateKey(hash: string): string {
    return `${this.keyPrefix}:host-budget:${hash}`;
  }

  private slotsKey(hash: string): string {
    return `${this.keyPrefix}:host-budget:${hash}:slots`;
  }

  private async acquire(provider: HostProvider, hash: string): Promise<Lease> {
    const leaseId = randomBytes(8).toString('hex');
    const deadline = this.now() + this.acquireTimeoutMs;
    let pauseMs = 15;
    for (;;) {
      const now = this.now();
      let outcome: [string, string];
      try {
        outcome = (await this.redis.eval(
          ACQUIRE,
          2,
          this.stateKey(hash),
          this.slotsKey(hash),
          String(now),
          String(this.capacity),
          leaseId,
          String(now + this.slotLeaseMs),
          String(this.slotLeaseMs * 2),
        )) as [string, string];
      } catch (error) {
        this.onRedisError(error);
        return { release: async () => undefined };
      }
      const [state, until] = outcome;
      if (state === 'ok') {
        return {
          release: async () => {
            await this.redis
              .zrem(this.slotsKey(hash), leaseId)
              .catch((error: unknown) => this.onRedisError(error));
          },
        };
      }
      if (state === 'blocked' || state === 'exhausted') {
        const retryAfterMs = Math.max(1, Number(until) - now);
        const why =
          state === 'blocked' ? 'asked us to back off' : 'reported the API budget of this token spent';
        throw new HostRateLimited(
          provider,
          retryAfterMs,
          `${hostName(provider)} ${why}; retry in ${Math.ceil(retryAfterMs / 1000)} s (request not sent)`,
        );
      }
      if (now >= deadline) {
        throw new HostRateLimited(
          provider,
          1000,
          `${this.capacity} requests with this ${hostName(provider)} token are already running; retry shortly`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, pauseMs * (0.5 + Math.random())));
      pauseMs = Math.min(pauseMs * 2, 100);
    }
  }

  private async observe(
    provider: HostProvider,
    hash: string,
    status: number,
    headers: Headers,
    body: ArrayBuffer | null,
  ): Promise<void> {
    const now = this.now();
    const limit = readRateLimitHeaders(headers);
    const retryAfter = readRetryAfterMs(headers, now);
    let blockUntil: number | null = null;
    if (
      status === 429 ||
      (status === 403 && (retryAfter !== null || limit?.remaining === 0 || mentionsRateLimit(body)))
    ) {
      if (retryAfter !== null) blockUntil = now + retryAfter;
      else if (limit && limit.remaining <= 0 && limit.resetAtMs > now) blockUntil = limit.resetAtMs;
      else blockUntil = now + this.defaultBackoffMs;
    }
    try {
      await this.redis.eval(
        OBSERVE,
        1,
        this.stateKey(hash),
        String(now),
        limit ? String(limit.remaining) : '',
        limit ? String(limit.resetAtMs) : '',
        blockUntil === null ? '' : String(blockUntil),
        String(STATE_TTL_AFTER_MS),
      );
    } catch (error) {
      this.onRedisError(error);
    }
    if (blockUntil !== null) {
      const retryAfterMs = Math.max(1, blockUntil - now);
      throw new HostRateLimited(
        provider,
        retryAfterMs,
        `${hostName(provider)} rate-limited this token (HTTP ${status}); retry in ${Math.ceil(retryAfterMs / 1000)} s`,
        status,
      );
    }
  }
}

/** GitHub's secondary-limit 403s sometimes carry no header, only the message. */
function mentionsRateLimit(body: ArrayBuffer | null): boolean {
  if (!body) return false;
  const text = Buffer.from(body, 0, Math.min(body.byteLength, 4096)).toString('utf8');
  return /rate limit/i.test(text);
}
