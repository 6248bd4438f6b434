/**
 * THE "BEFORE" — a deliberately slow baseline for `pulse bench`. Never shipped: nothing
 * in src/ imports it.
 *
 * It serves pulse's HTTP API surface for the bench scenarios, with the same JSON, but is
 * written the way the slow systems pulse learns from were written:
 *
 *  - Express 4 with express.json();
 *  - a new PostgreSQL connection per request (connect, queries, end) — no pool;
 *  - the API key looked up in plain text with `SELECT * FROM baseline_keys` on every
 *    request — no hashing, no cache;
 *  - `SELECT *`, N+1 queries, tables with primary keys only (bench/baseline/schema.sql),
 *    so every lookup by device, metric or time is a sequential scan;
 *  - aggregates computed in JavaScript from raw rows;
 *  - writes: a SELECT per reading to find its device and one autocommitted INSERT per
 *    metric value — no batching, no transaction.
 *
 * Results are still correct (it is slow, not wrong): a value sent again for the same
 * device, metric and timestamp is stored as a new row and the newest row wins on read.
 *
 *   node --import tsx bench/baseline/server.ts --port 0 --database-url postgres://…
 *
 * Prints `listening <port>` on stdout when ready; exits on SIGTERM/SIGINT.
 * `GET /__stats` → `{queries}`: SQL statements run since start (for queries/request).
 */
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import express, { type NextFunction, type Request, type Response } from 'express';
import pg from 'pg';
import { formatUs, nowUs, parseDurationUs } from '../../src/lib/time.ts';
import { parseTimestamp } from '../../src/modules/readings/timestamp.ts';

/** The application_name of the baseline's connections: the bench cancels their leftover queries after each run. */
export const BASELINE_APP = 'pulse-baseline';

// ---- HTTP errors --------------------------------------------------------------------

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    detail: string,
  ) {
    super(detail);
  }
}
const badRequest = (detail: string) => new HttpError(400, 'Bad request', detail);
const notFound = (detail: string) => new HttpError(404, 'Not found', detail);

function sendError(res: Response, err: unknown) {
  if (res.headersSent) return;
  if (err instanceof HttpError) {
    res.status(err.status).json({ status: err.status, title: err.title, detail: err.message });
  } else {
    const detail = err instanceof Error ? err.message : String(err);
    res.status(500).json({ status: 500, title: 'Internal error', detail });
  }
}

// ---- database: one new connection per request --------------------------------------

let queryCount = 0;

/** timestamptz comes back as PostgreSQL's text (µs precision), not a millisecond Date. */
const TIMESTAMPTZ_OID = 1184;
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === TIMESTAMPTZ_OID ? (text: string) => text : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

const PG_TS = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?)?$/;

/** PostgreSQL's ISO output of a timestamptz (`2026-11-20 10:00:00.123456+00`) → epoch µs. */
function pgTsToUs(text: string): number {
  const m = PG_TS.exec(text);
  if (!m) throw new Error(`unexpected timestamp from the database: ${text}`);
  const n = (i: number) => Number(m[i] ?? 0);
  const offsetS = (m[8] === '-' ? -1 : 1) * (n(9) * 3600 + n(10) * 60 + n(11));
  const seconds = Date.UTC(n(1), n(2) - 1, n(3), n(4), n(5), n(6)) / 1000 - offsetS;
  return seconds * 1_000_000 + Number((m[7] ?? '').padEnd(6, '0'));
}

/** A µs timestamp as a query parameter (cast to timestamptz in SQL). */
const tsParam = (us: number) => formatUs(us);

interface DeviceRow {
  id: number;
  tenant: string;
  external_id: string;
  status: string;
}
interface ReadingRow {
  id: string; // bigserial
  device_id: number;
  metric: string;
  ts: string;
  value: number;
}

async function query<R extends pg.QueryResultRow>(db: pg.Client, sql: string, params: unknown[] = []): Promise<R[]> {
  queryCount++;
  return (await db.query<R>(sql, params)).rows;
}

// ---- request plumbing ----------------------------------------------------------------

type Handler = (req: Request, db: pg.Client, tenant: string) => Promise<unknown>;

/**
 * The per-request life cycle of the "before": open a connection, check the key, do the
 * work, close the connection, then answer.
 */
function route(databaseUrl: string, handler: Handler) {
  return async (req: Request, res: Response) => {
    const db = new pg.Client({ connectionString: databaseUrl, options: '-c TimeZone=UTC', types, application_name: BASELINE_APP });
    db.on('error', () => {}); // a dropped connection fails the pending query instead
    let body: unknown;
    let failure: unknown = null;
    try {
      await db.connect();
      const tenant = await authenticate(db, req);
      body = await handler(req, db, tenant);
    } catch (err) {
      failure = err;
    }
    await db.end().catch(() => {});
    if (failure !== null) sendError(res, failure);
    else res.json(body);
  };
}

async function authenticate(db: pg.Client, req: Request): Promise<string> {
  const m = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '');
  if (!m) throw new HttpError(401, 'Unauthorized', 'Missing API key (Authorization: Bearer <key>).');
  const rows = await query<{ key: string; tenant: string }>(db, 'SELECT * FROM baseline_keys WHERE key = $1', [m[1]]);
  if (!rows[0]) throw new HttpError(401, 'Unauthorized', 'Invalid API key.');
  return rows[0].tenant;
}

/**
 * Every row of the device (no unique constraint: two writers creating the same new
 * device at once can both insert it, so all its rows count as the one device).
 */
async function findDevice(db: pg.Client, tenant: string, externalId: string): Promise<DeviceRow[]> {
  const rows = await query<DeviceRow>(db, 'SELECT * FROM baseline_devices WHERE tenant = $1 AND external_id = $2', [tenant, externalId]);
  if (!rows.length) throw notFound(`No device '${externalId}'.`);
  return rows.sort((a, b) => a.id - b.id);
}

// ---- input checks (same rules as pulse) ----------------------------------------------

const DEVICE_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const METRIC_RE = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$/;
const FAR_FUTURE_US = Date.UTC(9999, 0, 1) * 1000;
const BUCKET_US = { '1m': 60e6, '1h': 3_600e6, '1d': 86_400e6 } as const;
const MAX_BUCKETS = 10_000;
const MAX_SINCE_US = 366 * 86_400e6;
const MAX_READINGS = 10_000;
const MAX_METRICS = 256;
const MAX_FUTURE_SKEW_US = 86_400e6;

function str(req: Request, name: string): string | undefined {
  const v = req.query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badRequest(`${name} must be given once.`);
  return v;
}

function intParam(req: Request, name: string, min: number, max: number, fallback: number): number {
  const v = str(req, name);
  if (v === undefined) return fallback;
  if (!/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) throw badRequest(`${name} must be an integer from ${min} to ${max}.`);
  return Number(v);
}

function timeParam(req: Request, name: string, fallback: number): number {
  const v = str(req, name);
  if (v === undefined) return fallback;
  const us = parseTimestamp(v);
  if (us === null) throw badRequest(`${name} must be an RFC 3339 timestamp or epoch milliseconds.`);
  return us;
}

function metricParam(req: Request, required: boolean): string | undefined {
  const v = str(req, 'metric');
  if (v === undefined) {
    if (required) throw badRequest('metric is required.');
    return undefined;
  }
  if (!METRIC_RE.test(v)) throw badRequest('metric must be 1–128 characters of A–Z a–z 0–9 _ . : / -');
  return v;
}

function deviceParam(req: Request): string {
  const device = req.params.device ?? '';
  if (!DEVICE_RE.test(device)) throw badRequest('device must be 1–128 characters of A–Z a–z 0–9 . _ : @ -');
  return device;
}

type MetricValues = Record<string, { ts: string; value: number }>;

/** Rows → `{name: {ts, value}}` with the newest row (ts, then id) of each metric. */
function newestPerMetric(rows: ReadingRow[]): MetricValues {
  const best = new Map<string, { us: number; id: number; value: number }>();
  for (const r of rows) {
    const us = pgTsToUs(r.ts);
    const id = Number(r.id);
    const b = best.get(r.metric);
    if (!b || us > b.us || (us === b.us && id > b.id)) best.set(r.metric, { us, id, value: r.value });
  }
  const metrics: MetricValues = {};
  for (const name of [...best.keys()].sort()) {
    const b = best.get(name)!;
    metrics[name] = { ts: formatUs(b.us), value: b.value };
  }
  return metrics;
}

// ---- endpoints -------------------------------------------------------------------------

/** GET /v1/devices/:device/latest — N+1: the device, its metrics, then one query per metric. */
const latestOfDevice: Handler = async (req, db, tenant) => {
  const device = deviceParam(req);
  const ids = (await findDevice(db, tenant, device)).map((d) => d.id);
  const names = await query<{ metric: string }>(db, 'SELECT DISTINCT metric FROM baseline_readings WHERE device_id = ANY($1::int[])', [ids]);
  const rows: ReadingRow[] = [];
  for (const { metric } of names) {
    const newest = await query<ReadingRow>(
      db,
      'SELECT * FROM baseline_readings WHERE device_id = ANY($1::int[]) AND metric = $2 ORDER BY ts DESC, id DESC LIMIT 1',
      [ids, metric],
    );
    rows.push(...newest);
  }
  return { device, metrics: newestPerMetric(rows), as_of: new Date().toISOString() };
};

/**
 * GET /v1/devices/:device/readings — the whole range fetched with SELECT * (one row per
 * value), grouped into readings (one per timestamp) in JavaScript, then paged by offset
 * (`?page=1, 2, …`); no cursors. With `metric`, only the readings that have it, with only
 * that metric.
 */
const rangeOfDevice: Handler = async (req, db, tenant) => {
  const device = deviceParam(req);
  const metric = metricParam(req, false);
  const fromUs = timeParam(req, 'from', 0);
  const toUs = timeParam(req, 'to', FAR_FUTURE_US);
  const limit = intParam(req, 'limit', 1, 10_000, 1000);
  const page = intParam(req, 'page', 1, 1_000_000, 1);
  if (fromUs >= toUs) throw badRequest('`from` must be before `to`.');
  const ids = (await findDevice(db, tenant, device)).map((d) => d.id);
  const params: unknown[] = [ids, tsParam(fromUs), tsParam(toUs)];
  let sql = 'SELECT * FROM baseline_readings WHERE device_id = ANY($1::int[]) AND ts >= $2::timestamptz AND ts < $3::timestamptz';
  if (metric !== undefined) {
    params.push(metric);
    sql += ' AND metric = $4';
  }
  const rows = await query<ReadingRow>(db, `${sql} ORDER BY ts DESC, id DESC`, params);
  // rows of one timestamp are adjacent in this order; the newest row of a metric comes first and wins
  const readings: { us: number; values: Map<string, number> }[] = [];
  for (const r of rows) {
    const us = pgTsToUs(r.ts);
    let current = readings[readings.length - 1];
    if (!current || current.us !== us) readings.push((current = { us, values: new Map() }));
    if (!current.values.has(r.metric)) current.values.set(r.metric, r.value);
  }
  const offset = (page - 1) * limit;
  const items = readings.slice(offset, offset + limit).map((r) => ({
    ts: formatUs(r.us),
    // metric names in sorted order, as pulse's metric sets keep them
    metrics: Object.fromEntries([...r.values.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))),
  }));
  return { device, items, next_cursor: null };
};

/** GET /v1/devices/:device/stats — every raw row fetched, buckets computed in JavaScript. */
const statsOfDevice: Handler = async (req, db, tenant) => {
  const device = deviceParam(req);
  const metric = metricParam(req, true)!;
  const bucket = str(req, 'bucket') ?? '1h';
  if (!(bucket in BUCKET_US)) throw badRequest('bucket must be 1m, 1h or 1d.');
  const bucketUs = BUCKET_US[bucket as keyof typeof BUCKET_US];
  const toUs = timeParam(req, 'to', nowUs());
  const fromUs = timeParam(req, 'from', toUs - 86_400e6);
  if (fromUs >= toUs) throw badRequest('`from` must be before `to`.');
  if ((toUs - fromUs) / bucketUs > MAX_BUCKETS) {
    throw badRequest(`At most ${MAX_BUCKETS} buckets per request: narrow the range or use a larger bucket.`);
  }
  const ids = (await findDevice(db, tenant, device)).map((d) => d.id);
  const rows = await query<ReadingRow>(
    db,
    'SELECT * FROM baseline_readings WHERE device_id = ANY($1::int[]) AND metric = $2 AND ts >= $3::timestamptz AND ts < $4::timestamptz',
    [ids, metric, tsParam(fromUs), tsParam(toUs)],
  );
  // one value per timestamp (the newest row wins), summed in time order
  const values = new Map<number, { id: number; value: number }>();
  for (const r of rows) {
    const us = pgTsToUs(r.ts);
    const id = Number(r.id);
    const v = values.get(us);
    if (!v || id > v.id) values.set(us, { id, value: r.value });
  }
  const buckets = new Map<number, { count: number; min: number; max: number; sum: number; first: number; last: number }>();
  for (const us of [...values.keys()].sort((a, b) => a - b)) {
    const value = values.get(us)!.value;
    const start = Math.floor(us / bucketUs) * bucketUs;
    const b = buckets.get(start);
    if (!b) buckets.set(start, { count: 1, min: value, max: value, sum: value, first: value, last: value });
    else {
      b.count++;
      b.sum += value;
      b.last = value;
      if (value < b.min) b.min = value;
      if (value > b.max) b.max = value;
    }
  }
  return {
    device,
    metric,
    bucket,
    from: formatUs(fromUs),
    to: formatUs(toUs),
    buckets: [...buckets.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([start, b]) => ({ ts: formatUs(start), count: b.count, min: b.min, max: b.max, avg: b.sum / b.count, sum: b.sum, first: b.first, last: b.last })),
  };
};

/**
 * GET /v1/readings/latest — the dashboard: every device of the tenant, a scan for each
 * one's newest reading since `since`, then a sort of all their rows for the latest values.
 */
const dashboard: Handler = async (req, db, tenant) => {
  const status = str(req, 'status') ?? 'active';
  if (status !== 'active' && status !== 'inactive' && status !== 'any') throw badRequest('status must be active, inactive or any.');
  const since = str(req, 'since') ?? '1d';
  const sinceUs = parseDurationUs(since);
  if (sinceUs === null || sinceUs > MAX_SINCE_US) throw badRequest('`since` must be a duration such as 15m, 6h or 1d, at most 366d.');
  const limit = intParam(req, 'limit', 1, 1000, 100);

  const devices =
    status === 'any'
      ? await query<DeviceRow>(db, 'SELECT * FROM baseline_devices WHERE tenant = $1', [tenant])
      : await query<DeviceRow>(db, 'SELECT * FROM baseline_devices WHERE tenant = $1 AND status = $2', [tenant, status]);
  if (!devices.length) return { items: [], as_of: new Date().toISOString() };
  const byId = new Map(devices.map((d) => [d.id, d]));
  const recent = await query<{ device_id: number; ts: string }>(
    db,
    'SELECT device_id, max(ts) AS ts FROM baseline_readings WHERE device_id = ANY($1::int[]) AND ts >= $2::timestamptz GROUP BY device_id',
    [[...byId.keys()], tsParam(nowUs() - sinceUs)],
  );

  // per external id (all its rows), newest first, ties by the lowest device id
  const top = new Map<string, { us: number; firstId: number; ids: number[] }>();
  for (const r of recent) {
    const d = byId.get(r.device_id)!;
    const us = pgTsToUs(r.ts);
    const t = top.get(d.external_id);
    if (!t) top.set(d.external_id, { us, firstId: d.id, ids: [d.id] });
    else {
      t.us = Math.max(t.us, us);
      t.firstId = Math.min(t.firstId, d.id);
      t.ids.push(d.id);
    }
  }
  const chosen = [...top.entries()].sort((a, b) => b[1].us - a[1].us || a[1].firstId - b[1].firstId).slice(0, limit);
  if (!chosen.length) return { items: [], as_of: new Date().toISOString() };

  // every metric of the chosen devices, not only those written since `since`
  const ids = chosen.flatMap(([external]) => devices.filter((d) => d.external_id === external).map((d) => d.id));
  const latest = await query<ReadingRow>(
    db,
    'SELECT DISTINCT ON (device_id, metric) * FROM baseline_readings WHERE device_id = ANY($1::int[]) ORDER BY device_id, metric, ts DESC, id DESC',
    [ids],
  );
  const rowsOf = new Map<string, ReadingRow[]>();
  for (const r of latest) {
    const external = byId.get(r.device_id)!.external_id;
    let list = rowsOf.get(external);
    if (!list) rowsOf.set(external, (list = []));
    list.push(r);
  }
  return {
    items: chosen.map(([external, t]) => ({ device: external, ts: formatUs(t.us), metrics: newestPerMetric(rowsOf.get(external) ?? []) })),
    as_of: new Date().toISOString(),
  };
};

interface ParsedReading {
  device: string;
  ts: number;
  metrics: [string, number][];
}

function checkBody(body: unknown, now: number): ParsedReading[] {
  if (!Array.isArray(body) || body.length === 0) throw badRequest('The body must be a non-empty JSON array of readings.');
  if (body.length > MAX_READINGS) throw new HttpError(413, 'Payload too large', `At most ${MAX_READINGS} readings per request (got ${body.length}).`);
  return body.map((item: unknown, i) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw badRequest(`readings[${i}] must be an object.`);
    const r = item as Record<string, unknown>;
    for (const k of Object.keys(r)) if (k !== 'device' && k !== 'ts' && k !== 'metrics') throw badRequest(`readings[${i}] has an unknown property '${k}'.`);
    if (typeof r.device !== 'string' || !DEVICE_RE.test(r.device)) throw badRequest(`readings[${i}].device must be 1–128 characters of A–Z a–z 0–9 . _ : @ -`);
    let ts = now;
    if (r.ts !== undefined) {
      const parsed = typeof r.ts === 'string' || typeof r.ts === 'number' ? parseTimestamp(r.ts) : null;
      if (parsed === null) throw new HttpError(422, 'Invalid readings', `readings[${i}].ts must be an RFC 3339 timestamp or epoch milliseconds.`);
      ts = parsed;
    }
    if (ts > now + MAX_FUTURE_SKEW_US) throw new HttpError(422, 'Invalid readings', `readings[${i}].ts is too far in the future.`);
    if (typeof r.metrics !== 'object' || r.metrics === null || Array.isArray(r.metrics)) throw badRequest(`readings[${i}].metrics must be an object.`);
    const metrics = Object.entries(r.metrics as Record<string, unknown>);
    if (metrics.length < 1 || metrics.length > MAX_METRICS) throw badRequest(`readings[${i}].metrics must have 1 to ${MAX_METRICS} values.`);
    for (const [name, value] of metrics) {
      if (!METRIC_RE.test(name)) throw badRequest(`readings[${i}]: metric name '${name.slice(0, 140)}' is not valid.`);
      if (typeof value !== 'number' || !Number.isFinite(value)) throw badRequest(`readings[${i}]: metric '${name}' must be a finite number.`);
    }
    return { device: r.device, ts, metrics: metrics as [string, number][] };
  });
}

/** POST /v1/readings — per reading a device SELECT (INSERT when new); per value an INSERT. */
const writeReadings: Handler = async (req, db, tenant) => {
  const readings = checkBody(req.body, nowUs());
  const distinct = new Set<string>();
  for (const r of readings) {
    const found = await query<DeviceRow>(db, 'SELECT * FROM baseline_devices WHERE tenant = $1 AND external_id = $2', [tenant, r.device]);
    let deviceId = found.length ? Math.min(...found.map((d) => d.id)) : null;
    if (deviceId === null) {
      const created = await query<DeviceRow>(
        db,
        "INSERT INTO baseline_devices (tenant, external_id, status) VALUES ($1, $2, 'active') RETURNING *",
        [tenant, r.device],
      );
      deviceId = created[0]!.id;
    }
    for (const [metric, value] of r.metrics) {
      await query(db, 'INSERT INTO baseline_readings (device_id, metric, ts, value) VALUES ($1, $2, $3::timestamptz, $4)', [
        deviceId,
        metric,
        tsParam(r.ts),
        value,
      ]);
      distinct.add(`${r.device}\u0000${metric}\u0000${r.ts}`);
    }
  }
  return { readings: readings.length, values: distinct.size, devices: new Set(readings.map((r) => r.device)).size };
};

// ---- the app -------------------------------------------------------------------------

export function buildBaselineApp(databaseUrl: string): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(express.json({ limit: '16mb' }));
  app.get('/__stats', (_req, res) => {
    res.json({ queries: queryCount });
  });
  app.get('/v1/devices/:device/latest', route(databaseUrl, latestOfDevice));
  app.get('/v1/devices/:device/readings', route(databaseUrl, rangeOfDevice));
  app.get('/v1/devices/:device/stats', route(databaseUrl, statsOfDevice));
  app.get('/v1/readings/latest', route(databaseUrl, dashboard));
  app.post('/v1/readings', route(databaseUrl, writeReadings));
  app.use((req, res) => {
    res.status(404).json({ status: 404, title: 'Not found', detail: `No route for ${req.method} ${req.path}.` });
  });
  // body parser failures (bad JSON, too large) and anything else thrown outside `route`
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = err as { status?: number; type?: string; message?: string };
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      res.status(e.status).json({ status: e.status, title: 'Bad request', detail: e.message ?? 'Bad request' });
    } else sendError(res, err);
  });
  return app;
}

async function main() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      'database-url': { type: 'string' },
    },
  });
  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL;
  if (!databaseUrl) {
    process.stderr.write('usage: node --import tsx bench/baseline/server.ts --port P --database-url URL\n');
    process.exit(2);
  }
  const server = buildBaselineApp(databaseUrl).listen(Number(values.port), values.host, () => {
    process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
  });
  server.on('error', (err) => {
    process.stderr.write(`baseline: ${err.message}\n`);
    process.exit(1);
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    // requests still running after 5 s (a slow scan) are cut off
    setTimeout(() => {
      server.closeAllConnections();
      process.exit(0);
    }, 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
