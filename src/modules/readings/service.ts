import type { RequestCache } from '../../infra/cache.ts';
import type { Db } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import { decodeCursor, encodeCursor } from '../../lib/cursor.ts';
import { formatUs, nowUs, parseDurationUs } from '../../lib/time.ts';
import * as repo from './repository.ts';
import { timestampParam } from './timestamp.ts';
import type { DashboardQuery, RangeQuery } from './schemas.ts';

const MAX_SINCE_US = 366 * 86_400e6;
const FAR_FUTURE_US = Date.UTC(9999, 0, 1) * 1000;

const timeParam = (name: string, value: string | number | undefined, fallback: number) => (value === undefined ? fallback : timestampParam(name, value));

function notFound(device: string) {
  return problem('not-found', `No device '${device}'.`);
}

// Latest values and dashboards are cached (dynamic kind: CACHE_DYNAMIC_TTL_MS) and evicted
// by the writes that change them; `as_of` is when the answer was read from the database.
// Both are returned rendered (serialized once, when read: src/http/rendered.ts).
const asOf = <T extends object>(value: T, at: number) => ({ ...value, as_of: new Date(at).toISOString() });

export async function latestOfDevice(db: Db, cache: RequestCache, tenantId: number, device: string) {
  const rendered = await cache.rendered(
    'latest',
    cache.shared.keys.latest(tenantId, device),
    async () => {
      const rows = await repo.latestOfDevice(db, tenantId, device);
      if (!rows.length) return undefined;
      const metrics: Record<string, { ts: string; value: number }> = {};
      for (const r of rows) if (r.metric !== null) metrics[r.metric] = { ts: formatUs(r.ts_us!), value: r.value! };
      return { device, metrics };
    },
    asOf,
  );
  if (!rendered) throw notFound(device);
  return rendered;
}

/** How far back the first, narrow attempt at a range page looks (see rangeOfDevice). */
const RANGE_WINDOW_US = 2 * 86_400e6;

export async function rangeOfDevice(db: Db, tenantId: number, device: string, q: RangeQuery, maxFutureSkewUs: number) {
  const fromUs = timeParam('from', q.from, 0);
  const toUs = timeParam('to', q.to, FAR_FUTURE_US);
  if (fromUs >= toUs) throw problem('validation', '`from` must be before `to`.');
  // no reading is stamped later than now + the accepted skew
  const beforeUs = Math.min(q.cursor ? Math.min(decodeCursor(q.cursor, ['number'] as const)[0], toUs) : toUs, nowUs() + maxFutureSkewUs + 1);
  // Newest-first over daily partitions (plus the default one) is a merge of every
  // partition in the range: first try the last two days, which prunes the rest, and
  // read the whole range only when that window holds less than a page.
  const windowFromUs = Math.max(fromUs, beforeUs - RANGE_WINDOW_US);
  let rows = await repo.rangePage(db, tenantId, device, q.metric ?? null, windowFromUs, beforeUs, q.limit);
  const found = rows.filter((r) => r.ts_us !== null).length;
  if (found < q.limit && windowFromUs > fromUs && rows.length > 0) {
    rows = await repo.rangePage(db, tenantId, device, q.metric ?? null, fromUs, beforeUs, q.limit);
  }
  if (!rows.length) throw notFound(device);
  const items: { ts: string; metrics: Record<string, number> }[] = [];
  for (const r of rows) {
    if (r.ts_us === null) continue;
    const metrics: Record<string, number> = {};
    if (q.metric) metrics[q.metric] = r.value!;
    else r.names!.forEach((name, i) => (metrics[name] = r.vals![i]!));
    items.push({ ts: formatUs(r.ts_us), metrics });
  }
  const last = rows[rows.length - 1]!;
  return { device, items, next_cursor: items.length === q.limit ? encodeCursor([last.ts_us!]) : null };
}

export async function dashboard(db: Db, cache: RequestCache, tenantId: number, q: DashboardQuery) {
  const sinceUs = parseDurationUs(q.since);
  if (sinceUs === null || sinceUs > MAX_SINCE_US) throw problem('validation', '`since` must be a duration such as 15m, 6h or 1d, at most 366d.');
  const status = q.status === 'any' ? null : (q.status ?? 'active');
  const key = cache.shared.keys.dashboard(tenantId, status, q.since, q.limit);
  const rendered = await cache.prerendered('dashboard', key, (at) => readDashboard(db, tenantId, status, sinceUs, q.limit, at), [cache.shared.keys.dashboardTag(tenantId)]);
  return rendered!;
}

/** A number as JSON.stringify writes it (values are finite: ingest rejects others). */
const num = (x: number) => (Number.isFinite(x) ? `${x}` : 'null');

/**
 * The dashboard's JSON (Dashboard, in its schema's key order), written from the rows as
 * they arrive: no object per device and metric to build and serialize again (those were
 * ~16 % of an uncached dashboard's CPU in pulse). Names are written by JSON.stringify.
 */
async function readDashboard(db: Db, tenantId: number, status: string | null, sinceUs: number, limit: number, at: number) {
  const rows = await repo.dashboard(db, tenantId, status, nowUs() - sinceUs, limit);
  let out = '{"items":[';
  let device: string | null = null;
  for (const r of rows) {
    if (r.device !== device) {
      out += `${device === null ? '' : '}},'}{"device":${JSON.stringify(r.device)},"ts":"${formatUs(r.device_ts_us)}","metrics":{`;
      device = r.device;
    } else out += ',';
    out += `${JSON.stringify(r.metric)}:{"ts":"${formatUs(r.ts_us)}","value":${num(r.value)}}`;
  }
  return `${out}${device === null ? '' : '}}'}],"as_of":"${new Date(at).toISOString()}"}`;
}
