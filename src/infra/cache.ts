import diagnostics_channel from 'node:diagnostics_channel';
import { BentoCache, bentostore, errors } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis';
import { Redis, type RedisOptions } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { Metrics } from './metrics.ts';
import { renderBody, renderOnce, type Rendered } from '../http/rendered.ts';

/**
 * What is cached. Static kinds change only through the devices API; dynamic kinds change
 * with every write. Both are evicted when they change: the TTL only bounds how long an
 * entry missed by an eviction (see README, Caching) can live.
 */
export type CacheKind = 'device' | 'devices' | 'latest' | 'dashboard' | 'stats';
const DYNAMIC: Record<CacheKind, boolean> = { device: false, devices: false, latest: true, dashboard: true, stats: false };

/**
 * Stats are cached only over closed time: an answer whose `to` is at least STATS_CLOSED_US
 * old. A write holding a reading older than STATS_LATE_US evicts the stats of its device and
 * its tenant's fleet; the margin between the two (30 min) absorbs clock skew between
 * instances, so a late reading always evicts every answer it changes.
 */
export const STATS_CLOSED_US = 3_600e6;
export const STATS_LATE_US = 1_800e6;
export type CacheTier = 'l1' | 'l2' | 'miss';

/** Bytes an L1 entry is counted for: its answer's body and ETag, plus the objects around them. */
const ENTRY_OVERHEAD_BYTES = 256;
function entrySize(item: object): number {
  const v = (item as { value?: { v?: Partial<Rendered> } }).value?.v;
  if (typeof v?.body === 'string') return Buffer.byteLength(v.body, 'utf8') + (v.etag?.length ?? 0) + ENTRY_OVERHEAD_BYTES;
  return Buffer.byteLength(JSON.stringify(item), 'utf8') + ENTRY_OVERHEAD_BYTES;
}

/**
 * The L1's LRU. bentocache 1.6 (issue Julien-R44/bentocache#111) refills an unserialized
 * L1 from L2 with the serialized string, which its next L1 read cannot decode: such a
 * string is decoded here, once, with bentocache's default serializer (JSON).
 */
class L1Entries extends LRUCache<string, object> {
  override set(key: string, value: object | string | undefined, options?: LRUCache.SetOptions<string, object, unknown>): this {
    return super.set(key, typeof value === 'string' ? (JSON.parse(value) as object) : value, options);
  }
}

/** The cache as one request sees it: lookups record what they did, for Server-Timing and the stale header. */
export class RequestCache {
  tier: CacheTier | null = null;
  stale = false;
  /** serialize: the route's response serializer (reply.serialize), for rendered(). */
  constructor(
    readonly shared: PulseCache,
    private readonly serialize: (value: unknown) => string,
  ) {}
  /**
   * The answer for `key` as it is sent: the cache holds it serialized (with `present`
   * applied: `at` is when load() began), so a hit costs no serialization or hashing.
   * undefined: load() found nothing (not cached).
   */
  async rendered<T>(
    kind: CacheKind,
    key: string,
    load: () => Promise<T | undefined>,
    present: (value: T, at: number) => unknown = (v) => v,
    tags?: string[],
  ): Promise<Rendered | undefined> {
    return this.prerendered(
      kind,
      key,
      async (at) => {
        const value = await load();
        return value === undefined ? undefined : this.serialize(present(value, at));
      },
      tags,
    );
  }
  /**
   * rendered() for an answer whose load() renders its body itself (JSON text). With the
   * cache off the answer is rendered for this request only (Rendered.once).
   */
  async prerendered(kind: CacheKind, key: string, load: (at: number) => Promise<string | undefined>, tags?: string[]): Promise<Rendered | undefined> {
    const hit = await this.shared.get<Rendered>(
      this,
      kind,
      key,
      async (at) => {
        const body = await load(at);
        if (body === undefined) return undefined;
        return this.shared.enabled ? renderBody(body) : renderOnce(body);
      },
      tags,
    );
    return hit?.value;
  }
  record(tier: CacheTier, stale: boolean) {
    // several lookups in one request: report the slowest tier
    const rank = { l1: 0, l2: 1, miss: 2 };
    if (this.tier === null || rank[tier] > rank[this.tier]) this.tier = tier;
    this.stale ||= stale;
  }
}

/** A cached answer and when it was read from the database (epoch ms). */
export interface Cached<T> {
  value: T;
  at: number;
}

interface Envelope {
  v: unknown;
  at: number;
}

/** An entry in bentocache's L1 (see PulseCache.l1Hit). */
interface L1Item {
  value: unknown;
  logicalExpiration: number;
  createdAt: number;
  tags?: string[];
}

/**
 * What bentocache reports of one getOrSet on its tracing channel: the message is published
 * when the operation starts and filled in (hit, tier, graced) by the time it resolves.
 */
interface OperationMessage {
  operation: string;
  hit?: boolean;
  tier?: 'l1' | 'l2';
  graced?: boolean;
}

/**
 * The message of the getOrSet being called right now. bentocache publishes it synchronously
 * within the call, so the caller sets `capturing`, calls, and takes the message: exact per
 * lookup, without AsyncLocalStorage (whose promise hooks tax every request of the process).
 */
let capturing: { message: OperationMessage | null } | null = null;
diagnostics_channel.tracingChannel('bentocache.cache.operation').subscribe({
  start(message: unknown) {
    const m = message as OperationMessage;
    if (capturing && !capturing.message && m.operation === 'getOrSet') capturing.message = m;
  },
} as unknown as Parameters<diagnostics_channel.TracingChannel['subscribe']>[0]);

const ENTRY_FORMAT = 'r2';
const TAG_KEY = '___bc:t:'; // bentocache's key prefix for tag invalidation stamps
const MAX_MARKS = 100_000;
const DELETE_CHUNK = 5_000;

/** Keys are tenant-scoped: `<tenant>:<kind>:…` (device ids last: they may contain ':'). */
const keys = {
  device: (tenantId: number, id: string) => `${tenantId}:device:${id}`,
  devices: (tenantId: number, status: string | null, limit: number, after: string | null) =>
    `${tenantId}:devices:${status ?? 'any'}:${limit}:${after ?? ''}`,
  latest: (tenantId: number, device: string) => `${tenantId}:latest:${device}`,
  dashboard: (tenantId: number, status: string | null, since: string, limit: number) =>
    `${tenantId}:dashboard:${status ?? 'any'}:${since}:${limit}`,
  /** A device's stats answer: query parameters joined (device last: it may contain ':'). */
  deviceStats: (tenantId: number, query: string, device: string) => `${tenantId}:stats:d:${query}:${device}`,
  fleetStats: (tenantId: number, query: string) => `${tenantId}:stats:f:${query}`,
  devicesTag: (tenantId: number) => `${tenantId}:devices`,
  dashboardTag: (tenantId: number) => `${tenantId}:dashboard`,
  deviceStatsTag: (tenantId: number, device: string) => `${tenantId}:stats:${device}`,
  fleetStatsTag: (tenantId: number) => `${tenantId}:fleet-stats`,
};

/**
 * The two-tier read cache (bentocache): L1 in process memory bounded in bytes, and with
 * REDIS_URL an L2 in Redis plus a bus through which an eviction on one instance evicts
 * every instance's L1. getOrSet gives stampede protection (one database read per key and
 * instance), grace (an expired entry is kept and served, marked stale, when the database
 * fails or is slower than CACHE_STALE_TIMEOUT_MS) and an L2 circuit breaker (after a
 * Redis failure, L2 is skipped for CACHE_L2_BREAKER_MS; every Redis command is bounded by
 * REDIS_TIMEOUT_MS). With CACHE_ENABLED=false every lookup goes to the database.
 */
export class PulseCache {
  private readonly bento: BentoCache<Record<'pulse', ReturnType<typeof bentostore>>> | null = null;
  private readonly redis: Redis | null = null;
  /** key or tag → invalidation sequence number, to catch loads that overlap an eviction */
  private readonly invalidatedAt = new Map<string, number>();
  private seq = 0;
  private floor = 0;
  /** key → `at` of an entry served stale, so its later L1 hits (grace backoff) stay marked */
  private readonly staleMarks = new Map<string, number>();
  private readonly dashboardTouched = new Map<number, { last: number; timer: NodeJS.Timeout | null }>();
  private circuitOpenUntil = 0;
  private hadRedisOutage = false;
  /** The L1's LRU (bentocache's memory driver holds it) and its key prefix, for l1Hit(). */
  private readonly l1: L1Entries | null = null;
  private readonly l1Prefix: string;

  constructor(
    private readonly config: Config,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    // entries hold rendered answers (src/http/rendered.ts); the format's version keeps an
    // instance of another version, sharing the Redis during a rolling deploy, off them
    const prefix = `${config.CACHE_PREFIX}.${ENTRY_FORMAT}`;
    this.l1Prefix = `${prefix}:`;
    if (!config.CACHE_ENABLED) return;
    const l1 = new L1Entries({
      maxSize: config.CACHE_L1_MAX_BYTES,
      // one huge answer must not flush everything else
      maxEntrySize: Math.max(1, Math.floor(config.CACHE_L1_MAX_BYTES / 8)),
      sizeCalculation: entrySize,
      dispose: (_v, key, reason) => {
        if (reason === 'evict') metrics.cacheEvictions.inc({ kind: kindOf(key), reason: 'capacity' });
      },
    });
    this.l1 = l1;
    metrics.cacheSource.l1Bytes = () => l1.calculatedSize;
    metrics.cacheSource.circuitOpen = () => (Date.now() < this.circuitOpenUntil ? 1 : 0);
    // cacheInstance: bentocache's memory driver takes an LRU of ours, so its bytes can be
    // measured. serialize false: L1 holds the entries themselves — a hit neither parses a
    // copy of the answer nor leaves one behind as garbage (entries are never mutated).
    let store = bentostore().useL1Layer(memoryDriver({ cacheInstance: l1, serialize: false } as Parameters<typeof memoryDriver>[0]));
    if (config.REDIS_URL) {
      const options: RedisOptions = {
        commandTimeout: config.REDIS_TIMEOUT_MS,
        connectTimeout: Math.max(config.REDIS_TIMEOUT_MS, 1_000),
        maxRetriesPerRequest: 1,
        retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
      };
      // the L2 connection fails commands at once while disconnected instead of queueing them
      this.redis = new Redis(config.REDIS_URL, { ...options, enableOfflineQueue: false, lazyConnect: true });
      this.redis.on('error', (err) => log.debug({ err }, 'redis connection error'));
      this.redis.on('close', () => (this.hadRedisOutage = true));
      this.redis.on('ready', () => this.afterRedisOutage());
      // the bus duplicates this (never connected) one into a publisher and a subscriber, which
      // queue while offline so the subscription survives reconnects; they get our error listener
      const busBase = new Redis(config.REDIS_URL, { ...options, lazyConnect: true });
      const duplicate = busBase.duplicate.bind(busBase);
      busBase.duplicate = (override) => {
        const conn = duplicate(override).on('error', (err) => log.debug({ err }, 'redis bus connection error'));
        // bentocache subscribes once and does not wait: a SUBSCRIBE that times out (Redis slow
        // or away at start) must not reject (an unhandled rejection, and the bus would drop its
        // handler) but be sent again until Redis confirms it
        const subscribe = conn.subscribe.bind(conn) as (...channels: string[]) => Promise<unknown>;
        const untilConfirmed = (channels: string[]): Promise<unknown> =>
          subscribe(...channels).catch(async (err) => {
            if (conn.status === 'end') return;
            log.warn({ err }, 'redis bus subscription not confirmed; retrying');
            await new Promise((r) => setTimeout(r, 500).unref());
            return untilConfirmed(channels);
          });
        (conn as unknown as { subscribe: typeof subscribe }).subscribe = (...channels) => untilConfirmed(channels);
        return conn;
      };
      store = store
        .useL2Layer(redisDriver({ connection: this.redis }))
        .useBus(redisBusDriver({ connection: busBase, retryQueue: { enabled: true, maxSize: 10_000 } }));
    }
    this.bento = new BentoCache({
      default: 'pulse',
      stores: { pulse: store },
      prefix,
      grace: config.CACHE_GRACE_MS > 0 ? config.CACHE_GRACE_MS : false,
      graceBackoff: 5_000,
      timeout: config.CACHE_STALE_TIMEOUT_MS,
      l2CircuitBreakerDuration: config.CACHE_L2_BREAKER_MS,
      internalOperationWrapper: <T>(fn: () => T): T => {
        const r = fn();
        if (r instanceof Promise) r.catch(() => this.redisFailed());
        return r;
      },
    });
    // evictions made by other instances: a load of ours overlapping them must not be cached as fresh
    (this.bento as unknown as { on(e: string, cb: (d: { message: { keys: string[]; type: string } }) => void): void }).on(
      'bus:message:received',
      ({ message }) => {
        if (message.type === 'delete') for (const k of message.keys) this.markInvalidated(k);
        else if (message.type === 'set') for (const k of message.keys) if (k.startsWith(TAG_KEY)) this.markInvalidated(k.slice(TAG_KEY.length));
      },
    );
  }

  /** Connects to Redis when configured; a Redis that is down is not an error (L1 serves). */
  async start(): Promise<void> {
    if (!this.redis) return;
    try {
      await this.redis.connect();
    } catch (err) {
      this.log.warn({ err }, 'redis unreachable at start; caching in L1 until it answers');
    }
    this.bento!.use(); // creates the L2 driver and subscribes the bus now, not on the first request
  }

  get enabled(): boolean {
    return this.bento !== null;
  }

  /**
   * The cached answer for `key`, or load() and cache it. load() returning undefined
   * (not found) caches nothing. When load() fails and an expired entry is at hand, that
   * entry is returned with `use` marked stale; otherwise load's error is thrown.
   */
  async get<T>(use: RequestCache | null, kind: CacheKind, key: string, load: (at: number) => Promise<T | undefined>, tags?: string[]): Promise<Cached<T> | undefined> {
    if (!this.bento) {
      const at = Date.now();
      const value = await load(at);
      return value === undefined ? undefined : { value, at };
    }
    const fresh = this.l1Hit(key, tags);
    if (fresh) {
      const stale = this.staleMarks.get(key) === fresh.at;
      this.metrics.cacheLookups.inc({ kind, result: stale ? 'stale' : 'l1' });
      use?.record('l1', stale);
      return { value: fresh.v as T, at: fresh.at };
    }
    const started = this.seq;
    const capture: { message: OperationMessage | null } = { message: null };
    let env: Envelope | undefined;
    try {
      // getOrSet is async: it publishes its message before it returns the promise
      capturing = capture;
      const pending = this.bento.getOrSet<Envelope>({
        key,
        ttl: DYNAMIC[kind] ? this.config.CACHE_DYNAMIC_TTL_MS : this.config.CACHE_STATIC_TTL_MS,
        tags,
        factory: async (ctx) => {
          const at = Date.now();
          const v = await load(at);
          if (v === undefined) return ctx.skip() as unknown as Envelope;
          // evicted while we read: answer with it, but let the next lookup read again
          if (this.invalidatedSince(started, key, tags)) ctx.setOptions({ ttl: 1 });
          return { v, at };
        },
      });
      capturing = null;
      env = await pending;
    } catch (err) {
      throw err instanceof errors.E_FACTORY_ERROR ? (err as Error).cause : err;
    } finally {
      capturing = null;
    }
    if (env === undefined) {
      this.metrics.cacheLookups.inc({ kind, result: 'miss' });
      use?.record('miss', false);
      return undefined;
    }
    const m = capture.message;
    const tier: CacheTier = m?.hit && m.tier ? m.tier : 'miss';
    let stale = m?.graced === true;
    if (tier === 'miss') this.staleMarks.delete(key);
    else if (stale) this.mark(this.staleMarks, key, env.at);
    else stale = this.staleMarks.get(key) === env.at;
    this.metrics.cacheLookups.inc({ kind, result: stale ? 'stale' : tier });
    use?.record(tier, stale);
    return { value: env.v as T, at: env.at };
  }

  /**
   * The entry bentocache's getOrSet would answer from L1 without calling anything else
   * (fresh: not logically expired, and created after every invalidation of its tags that
   * this instance knows of), read straight from the L1 LRU. A hit is most requests:
   * getOrSet builds its options, a tracing context and, per tag, a nested getOrSet of the
   * tag's stamp: a cached latest answer took 92 µs of CPU that way, 27 µs this way
   * (10,000 → 35,000 answers/s on 2 cores). undefined: ask getOrSet, which also
   * covers what this does not (graced entries, tag stamps not in L1, L2, the factory).
   * Entries as bentocache 1.6 stores them (serialize: false): { value, logicalExpiration,
   * tags, createdAt }, under `<prefix>:<key>`, a tag's stamp under `<prefix>:___bc:t:<tag>`.
   */
  private l1Hit(key: string, tags: string[] | undefined): Envelope | undefined {
    const item = this.l1!.get(this.l1Prefix + key) as L1Item | undefined;
    if (!item) return undefined;
    const now = Date.now();
    if (!(now < item.logicalExpiration)) return undefined;
    const entryTags = item.tags ?? [];
    // the tags asked for are the ones the entry was stored with (keys are per answer)
    if (entryTags.length !== (tags?.length ?? 0)) return undefined;
    for (const tag of entryTags) {
      const stamp = this.l1!.get(this.l1Prefix + TAG_KEY + tag) as L1Item | undefined;
      if (!stamp || !(now < stamp.logicalExpiration) || !(item.createdAt > (stamp.value as number))) return undefined;
    }
    return item.value as Envelope;
  }

  /**
   * After a commit wrote readings of `devices`: evicts their latest values and (debounced)
   * the tenant's dashboards; `late`, the devices written a reading older than STATS_LATE_US,
   * also their stats and the tenant's fleet stats.
   */
  async afterWrite(tenantId: number, devices: Iterable<string>, devicesCreated: boolean, late: Iterable<string> = []): Promise<void> {
    if (!this.bento) return;
    const latest = [...devices].map((d) => keys.latest(tenantId, d));
    const lateTags = [...late].map((d) => keys.deviceStatsTag(tenantId, d));
    // in parallel: with Redis away, the answer waits for one REDIS_TIMEOUT_MS at most, not one per step
    await Promise.all([
      this.guard(() => this.deleteKeys('latest', latest)),
      devicesCreated ? this.guard(() => this.deleteTags('devices', [keys.devicesTag(tenantId)])) : null,
      this.guard(() => this.touchDashboard(tenantId)),
      lateTags.length ? this.guard(() => this.deleteTags('stats', [...lateTags, keys.fleetStatsTag(tenantId)])) : null,
    ]);
  }

  /** A device was created, changed or deleted: its record, latest values, lists and dashboards. */
  async afterDeviceChange(tenantId: number, device: string): Promise<void> {
    if (!this.bento) return;
    await Promise.all([
      this.guard(() => this.deleteKeys('device', [keys.device(tenantId, device)])),
      this.guard(() => this.deleteKeys('latest', [keys.latest(tenantId, device)])),
      this.guard(() => this.deleteTags('devices', [keys.devicesTag(tenantId)])),
      this.guard(() => this.deleteTags('dashboard', [keys.dashboardTag(tenantId)])),
      // its stats (deleted with its readings) and the fleet's (membership, status)
      this.guard(() => this.deleteTags('stats', [keys.deviceStatsTag(tenantId, device), keys.fleetStatsTag(tenantId)])),
    ]);
  }

  readonly keys = keys;

  async close(): Promise<void> {
    for (const t of this.dashboardTouched.values()) if (t.timer) clearTimeout(t.timer);
    this.dashboardTouched.clear();
    await this.bento?.disconnectAll().catch((err) => this.log.warn({ err }, 'cache disconnect failed'));
  }

  /**
   * Leading and trailing debounce: the first write after a quiet interval evicts the
   * dashboards before it is acknowledged; writes within the interval evict once at its
   * end. Under constant ingest a dashboard is rebuilt at most once per interval.
   */
  private async touchDashboard(tenantId: number): Promise<void> {
    const window = this.config.CACHE_DASHBOARD_DEBOUNCE_MS;
    const now = Date.now();
    const t = this.dashboardTouched.get(tenantId);
    if (!t || now - t.last >= window) {
      this.dashboardTouched.set(tenantId, { last: now, timer: t?.timer ?? null });
      if (this.dashboardTouched.size > MAX_MARKS) this.dashboardTouched.clear();
      return this.deleteTags('dashboard', [keys.dashboardTag(tenantId)]);
    }
    if (t.timer) return;
    t.timer = setTimeout(() => {
      t.timer = null;
      t.last = Date.now();
      void this.guard(() => this.deleteTags('dashboard', [keys.dashboardTag(tenantId)]));
    }, t.last + window - now);
    t.timer.unref();
  }

  private async deleteKeys(kind: CacheKind, list: string[]) {
    for (const k of list) this.markInvalidated(k);
    // bounded Redis commands and bus messages, whatever the size of an import
    for (let i = 0; i < list.length; i += DELETE_CHUNK) await this.bento!.deleteMany({ keys: list.slice(i, i + DELETE_CHUNK) });
    this.metrics.cacheEvictions.inc({ kind, reason: 'invalidated' }, list.length);
  }

  private async deleteTags(kind: CacheKind, tags: string[]) {
    for (const t of tags) this.markInvalidated(t);
    for (let i = 0; i < tags.length; i += DELETE_CHUNK) await this.bento!.deleteByTag({ tags: tags.slice(i, i + DELETE_CHUNK) });
    this.metrics.cacheEvictions.inc({ kind, reason: 'invalidated' }, tags.length);
  }

  /** A committed write is never failed by the cache: L1 is evicted first and cannot fail; L2 and bus errors are logged. */
  private async guard(fn: () => Promise<void>) {
    try {
      await fn();
    } catch (err) {
      this.log.warn({ err }, 'cache eviction failed');
    }
  }

  private markInvalidated(keyOrTag: string) {
    this.mark(this.invalidatedAt, keyOrTag, ++this.seq);
  }

  private invalidatedSince(started: number, key: string, tags?: string[]): boolean {
    if (started < this.floor) return true;
    if ((this.invalidatedAt.get(key) ?? 0) > started) return true;
    return tags?.some((t) => (this.invalidatedAt.get(t) ?? 0) > started) ?? false;
  }

  private mark(map: Map<string, number>, key: string, value: number) {
    if (map.size >= MAX_MARKS) {
      map.clear();
      // forgotten invalidations: treat every load in flight as overlapping one
      if (map === this.invalidatedAt) this.floor = this.seq;
    }
    map.set(key, value);
  }

  private redisFailed() {
    this.metrics.cacheRedisErrors.inc();
    // mirrors bentocache's breaker: it opens on a failed L2 operation and skips L2 meanwhile
    if (Date.now() >= this.circuitOpenUntil) this.circuitOpenUntil = Date.now() + this.config.CACHE_L2_BREAKER_MS;
  }

  /** Evictions sent while Redis was away may have missed L2 and other instances: start both over. */
  private afterRedisOutage() {
    if (!this.hadRedisOutage) return;
    this.hadRedisOutage = false;
    this.log.info('redis is back; clearing the cache once (evictions may have been missed meanwhile)');
    void this.bento!.clear().catch((err) => this.log.warn({ err }, 'cache clear after redis outage failed'));
  }
}

/** The cache kind of an L1 key `<prefix>:<tenant>:<kind>:…`. */
function kindOf(l1Key: string): string {
  const kind = l1Key.split(':', 3)[2];
  return kind && kind in DYNAMIC ? kind : 'tag';
}
