import { STATS_CLOSED_US, type RequestCache } from '../../infra/cache.ts';
import type { Db } from '../../infra/db.ts';
import { renderOnce, type Rendered } from '../../http/rendered.ts';
import { problem } from '../../http/errors.ts';
import { formatUs, nowUs } from '../../lib/time.ts';
import { timestampParam } from '../readings/timestamp.ts';
import { readDone } from '../rollups/repository.ts';
import { BUCKET_US, planRead, type BucketName } from './plan.ts';
import * as repo from './repository.ts';
import type { FleetStatsQuery, StatsQuery } from './schemas.ts';

const MAX_BUCKETS = 10_000;
/**
 * The watermark only moves forward, and reading with an older one is still exact (more
 * is read raw), so each process may remember it briefly instead of asking per request.
 */
const WATERMARK_TTL_MS = 1000;

const timeParam = (name: string, value: string | number | undefined, fallback: number) => (value === undefined ? fallback : timestampParam(name, value));

function window(q: StatsQuery) {
  const bucket: BucketName = q.bucket ?? '1h';
  const toUs = timeParam('to', q.to, nowUs());
  const fromUs = timeParam('from', q.from, toUs - 86_400e6);
  if (fromUs >= toUs) throw problem('validation', '`from` must be before `to`.');
  if ((toUs - fromUs) / BUCKET_US[bucket] > MAX_BUCKETS) {
    throw problem('validation', `At most ${MAX_BUCKETS} buckets per request: narrow the range or use a larger bucket.`);
  }
  return { bucket, fromUs, toUs };
}

/** A stats answer's JSON: `head`'s fields, then `buckets` (the array's elements, rendered by the SQL). */
const statsBody = (head: Record<string, string>, buckets: string) => `${JSON.stringify(head).slice(0, -1)},"buckets":[${buckets}]}`;

/**
 * Stats of one metric per bucket, for a device or a tenant's fleet: rollups for whole
 * pieces below the watermark, raw readings for the rest (src/modules/stats/plan.ts).
 * With rollups disabled, everything is read raw.
 */
export class StatsService {
  // the read in flight: concurrent requests after expiry share one query instead of each running it
  private watermark = { us: Promise.resolve(null) as Promise<number | null>, at: -Infinity };

  constructor(private readonly rollupsEnabled: boolean) {}

  private async done(db: Db): Promise<number | null> {
    if (!this.rollupsEnabled) return null;
    const now = performance.now();
    if (now - this.watermark.at > WATERMARK_TTL_MS) {
      const previous = this.watermark;
      // a failed read is not kept: the next request reads again
      const us = readDone(db).catch((err: unknown) => {
        if (this.watermark.us === us) this.watermark = previous;
        throw err;
      });
      this.watermark = { us, at: now };
    }
    return this.watermark.us;
  }

  /**
   * A device's stats. Answers over closed time (`to` at least STATS_CLOSED_US ago) are
   * cached, rendered, until a late reading of the device evicts them (src/infra/cache.ts).
   */
  async device(db: Db, cache: RequestCache, tenantId: number, device: string, q: StatsQuery): Promise<Rendered> {
    const { bucket, fromUs, toUs } = window(q);
    const rendered = await answer(
      cache,
      toUs,
      () => [cache.shared.keys.deviceStats(tenantId, JSON.stringify([q.metric, bucket, fromUs, toUs]), device), [cache.shared.keys.deviceStatsTag(tenantId, device)]],
      async () => {
        const plan = planRead(fromUs, toUs, bucket, await this.done(db));
        const rows = await repo.deviceStats(db, tenantId, device, q.metric, bucket, plan);
        if (!rows.length) return undefined;
        return statsBody({ device, metric: q.metric, bucket, from: formatUs(fromUs), to: formatUs(toUs) }, rows[0]!.buckets);
      },
    );
    if (!rendered) throw problem('not-found', `No device '${device}'.`);
    return rendered;
  }

  /** Stats over the tenant's devices; cached over closed time as device stats are. */
  async fleet(db: Db, cache: RequestCache, tenantId: number, q: FleetStatsQuery): Promise<Rendered> {
    const { bucket, fromUs, toUs } = window(q);
    const status = q.status ?? 'active';
    const rendered = await answer(
      cache,
      toUs,
      () => [cache.shared.keys.fleetStats(tenantId, JSON.stringify([status, q.metric, bucket, fromUs, toUs])), [cache.shared.keys.fleetStatsTag(tenantId)]],
      async () => {
        const plan = planRead(fromUs, toUs, bucket, await this.done(db));
        const rows = await repo.fleetStats(db, tenantId, status === 'any' ? null : status, q.metric, bucket, plan);
        return statsBody({ status, metric: q.metric, bucket, from: formatUs(fromUs), to: formatUs(toUs) }, rows[0]!.buckets);
      },
    );
    return rendered!;
  }
}

/**
 * A stats answer: over closed time from the cache (`key`: its key and tags), else read
 * and rendered for this request only. undefined: read() found nothing.
 */
async function answer(cache: RequestCache, toUs: number, key: () => [string, string[]], read: () => Promise<string | undefined>) {
  if (closed(cache, toUs)) {
    const [k, tags] = key();
    return cache.prerendered('stats', k, read, tags);
  }
  const body = await read();
  return body === undefined ? undefined : renderOnce(body);
}

/** Whether an answer ending at `toUs` may be cached: the cache is on and the time is closed. */
const closed = (cache: RequestCache, toUs: number) => cache.shared.enabled && toUs <= nowUs() - STATS_CLOSED_US;
