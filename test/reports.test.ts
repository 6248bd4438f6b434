import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { makeWorkerUtils, type TaskList } from 'graphile-worker';
import pino from 'pino';
import type { Config } from '../src/config.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { reportTasks } from '../src/modules/reports/jobs.ts';
import { acceptsGzip } from '../src/modules/reports/routes.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { quietGraphileLogger, runJobsOnce } from './helpers/wait.ts';

const quiet = quietGraphileLogger;

const BASE = Date.UTC(2025, 0, 10);
const MIN = 60_000;
const HOUR = 3_600_000;
const FROM = BASE;
const TO = BASE + 3 * HOUR;
const METRICS = ['temp', 'hum'];

/** RFC 3339 with 6 fractional digits, as reports write timestamps. */
const isoUs = (ms: number) => `${new Date(ms).toISOString().slice(0, -1)}000Z`;

interface Reading {
  device: string;
  ts: number;
  metrics: Record<string, number>;
}

/** A fleet with readings that exercise every case: partial metric sets, unrequested metrics, edges of the range. */
function fleet(): Reading[] {
  const out: Reading[] = [];
  for (let i = 0; i < 18; i++) {
    const ts = BASE + i * 10 * MIN;
    const m: Record<string, number> = {};
    if (i % 3 !== 2) m.temp = 20 + i * 0.25;
    if (i % 3 !== 1) m.hum = 40 - i * 1.5;
    if (i % 4 === 0) m.pressure = 1000 + i;
    out.push({ device: 'dev-a', ts, metrics: m });
  }
  out.push({ device: 'dev-a', ts: BASE + 5 * MIN, metrics: { pressure: 990 } }); // no requested metric: no line
  out.push({ device: 'dev-a', ts: BASE - 1, metrics: { temp: 99 } }); // before `from`
  out.push({ device: 'dev-a', ts: TO, metrics: { temp: 99 } }); // at `to`: excluded
  for (let i = 0; i < 5; i++) out.push({ device: 'dev-b', ts: BASE + 70 * MIN + i * MIN, metrics: { temp: -3.5 * i, hum: 1e-3 * i, pressure: 1 } });
  out.push({ device: 'dev-c', ts: BASE + HOUR, metrics: { temp: 7 } });
  return out;
}

/** What the report must contain, computed from the database's readings (not from the report code). */
async function expectedRaw(t: TestApp, tenant: string, devices: string[]) {
  const { rows } = await t.db.pool.query<{ device: string; ts_ms: string; names: string[]; vals: number[] }>(
    `select d.external_id as device, (extract(epoch from r.ts) * 1000)::int8::text as ts_ms, m.names, r.vals
       from readings r join devices d on d.id = r.device_id join metric_sets m on m.id = r.metric_set
       join tenants tn on tn.id = d.tenant_id
      where tn.name = $1 and d.external_id = any($2) and r.ts >= $3 and r.ts < $4
      order by d.external_id, r.ts`,
    [tenant, devices, new Date(FROM), new Date(TO)],
  );
  return rows
    .map((r) => ({
      device: r.device,
      ts: isoUs(Number(r.ts_ms)),
      values: METRICS.map((m) => (r.names.includes(m) ? r.vals[r.names.indexOf(m)]! : null)),
    }))
    .filter((r) => r.values.some((v) => v !== null));
}

function expectedBuckets(raw: Awaited<ReturnType<typeof expectedRaw>>, bucketMs: number) {
  const groups = new Map<string, { device: string; bucket: string; metric: string; vals: number[] }>();
  for (const r of raw) {
    const b = Math.floor(Date.parse(r.ts) / bucketMs) * bucketMs;
    METRICS.forEach((m, i) => {
      const v = r.values[i];
      if (v === null || v === undefined) return;
      const k = `${r.device}|${b}|${i}`;
      if (!groups.has(k)) groups.set(k, { device: r.device, bucket: isoUs(b), metric: m, vals: [] });
      groups.get(k)!.vals.push(v);
    });
  }
  return [...groups.values()].map((g) => ({
    device: g.device,
    bucket: g.bucket,
    metric: g.metric,
    count: g.vals.length,
    min: Math.min(...g.vals),
    max: Math.max(...g.vals),
    avg: g.vals.reduce((a, b) => a + b, 0) / g.vals.length,
  }));
}

const num = (s: string) => (s === '' ? null : Number(s));
const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

describe('reports', () => {
  let t: TestApp;
  let dir: string;
  let tasks: TaskList;
  let key: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pulse-reports-test-'));
    t = await createTestApp({ REPORTS_DIR: dir, WEBHOOK_ALLOW_PRIVATE: true });
    tasks = reportTasks({ config: t.config, database: t.database, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
    key = await t.key('rep');
    const dev = await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(key), payload: { id: 'dev-c', status: 'inactive' } });
    assert.equal(dev.statusCode, 201, dev.body);
    const w = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: fleet() });
    assert.equal(w.statusCode, 200, w.body);
  });
  after(async () => {
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  const runJobs = async (taskList = tasks) => {
    await runJobsOnce(t.db.url, taskList, t.db.pool);
  };
  const get = (url: string, headers: Record<string, string> = {}, k = key) => t.app.inject({ method: 'GET', url, headers: { ...bearer(k), ...headers } });
  const create = (body: object, k = key) => t.app.inject({ method: 'POST', url: '/v1/reports', headers: bearer(k), payload: body });
  const counts = async () =>
    (
      await t.db.pool.query<{ reports: number; jobs: number }>(
        `select (select count(*) from reports)::int as reports,
                (select count(*) from graphile_worker.jobs where task_identifier = 'report.generate')::int as jobs`,
      )
    ).rows[0]!;

  /** Requests a report, runs the job, and returns it with its decompressed content. */
  async function generate(body: object) {
    const res = await create(body);
    assert.equal(res.statusCode, 202, res.body);
    const queued = res.json();
    assert.equal(res.headers.location, `/v1/reports/${queued.id}`);
    assert.equal(queued.status, 'queued');
    await runJobs();
    const report = (await get(`/v1/reports/${queued.id}`)).json();
    assert.equal(report.status, 'ready', JSON.stringify(report));
    const dl = await get(`/v1/reports/${queued.id}/download`, { 'accept-encoding': 'gzip' });
    assert.equal(dl.statusCode, 200, dl.body);
    assert.equal(dl.headers['content-encoding'], 'gzip');
    const text = gunzipSync(dl.rawPayload).toString('utf8');
    return { report, text, gzip: dl.rawPayload };
  }

  it('raw CSV: one line per reading, a column per metric, equal to the readings in the database', async () => {
    const { report, text, gzip } = await generate({ devices: ['dev-b', 'dev-a'], metrics: METRICS, from: isoUs(FROM), to: TO, format: 'csv' });
    const [header, ...lines] = text.trimEnd().split('\n');
    assert.equal(header, 'device,ts,temp,hum');
    const got = lines.map((l) => {
      const [device, ts, ...vals] = l.split(',');
      return { device, ts, values: vals.map(num) };
    });
    const want = await expectedRaw(t, 'rep', ['dev-a', 'dev-b']);
    assert.ok(want.length > 10 && want.some((r) => r.values.includes(null)), 'the fixture has partial readings');
    assert.deepEqual(got, want);
    assert.equal(report.rows, want.length);
    assert.equal(report.bytes, gzip.length);
    assert.ok(text.endsWith('\n'));
    const days = (Date.parse(report.expires_at) - Date.parse(report.finished_at)) / 86_400_000;
    assert.ok(Math.abs(days - 7) < 0.01, `expires ${days} days after it is ready`);
    assert.deepEqual(await readdir(dir).then((f) => f.filter((n) => n.startsWith(report.id))), [`${report.id}.csv.gz`], 'no temporary file left');
  });

  it('raw NDJSON: one JSON object per reading with only the metrics it has', async () => {
    const { report, text } = await generate({ devices: ['dev-a', 'dev-b'], metrics: METRICS, from: FROM, to: TO, format: 'ndjson' });
    const got = text.trimEnd().split('\n').map((l) => JSON.parse(l));
    const want = (await expectedRaw(t, 'rep', ['dev-a', 'dev-b'])).map((r) => ({
      device: r.device,
      ts: r.ts,
      metrics: Object.fromEntries(METRICS.flatMap((m, i) => (r.values[i] === null ? [] : [[m, r.values[i]]]))),
    }));
    assert.deepEqual(got, want);
    assert.equal(report.rows, want.length);
  });

  for (const format of ['csv', 'ndjson'] as const) {
    it(`bucketed ${format}: count/min/max/avg per device, hour and metric, equal to aggregating the readings`, async () => {
      const { text } = await generate({ metrics: METRICS, from: FROM, to: TO, bucket: '1h', format, status: 'active' });
      const lines = text.trimEnd().split('\n');
      const got =
        format === 'csv'
          ? (assert.equal(lines.shift(), 'device,bucket,metric,count,min,max,avg'),
            lines.map((l) => {
              const [device, bucket, metric, count, min, max, avg] = l.split(',');
              return { device, bucket, metric, count: Number(count), min: Number(min), max: Number(max), avg: Number(avg) };
            }))
          : lines.map((l) => JSON.parse(l));
      const want = expectedBuckets(await expectedRaw(t, 'rep', ['dev-a', 'dev-b']), HOUR);
      assert.equal(got.length, want.length);
      want.forEach((w, i) => {
        const g = got[i];
        assert.deepEqual({ ...g, avg: 0 }, { ...w, avg: 0 }, `line ${i}`);
        assert.ok(close(g.avg, w.avg), `avg of line ${i}: ${g.avg} vs ${w.avg}`);
      });
    });
  }

  it('selects devices by status', async () => {
    const { text } = await generate({ status: 'inactive', metrics: ['temp'], from: FROM, to: TO, format: 'csv' });
    assert.equal(text, `device,ts,temp\ndev-c,${isoUs(BASE + HOUR)},7\n`);
  });

  it('writes a header-only file when nothing matches', async () => {
    const { report, text } = await generate({ metrics: ['no-such-metric'], from: FROM, to: TO, format: 'csv' });
    assert.equal(text, 'device,ts,no-such-metric\n');
    assert.equal(report.rows, 0);
  });

  it('downloads: gzip passed through when accepted, decompressed otherwise, never compressed twice', async () => {
    const { report, gzip, text } = await generate({ devices: ['dev-a'], metrics: METRICS, from: FROM, to: TO, format: 'csv' });
    const name = `pulse-report-${report.created_at.slice(0, 10)}-${report.id.slice(0, 8)}.csv`;
    const url = `/v1/reports/${report.id}/download`;
    for (const accept of ['gzip', 'br, gzip;q=0.5', 'gzip, deflate, br']) {
      const res = await get(url, { 'accept-encoding': accept });
      assert.equal(res.headers['content-encoding'], 'gzip', accept);
      assert.equal(res.headers['content-length'], String(gzip.length));
      assert.ok(res.rawPayload.equals(gzip), 'the stored file, byte for byte');
    }
    for (const accept of [undefined, 'identity', 'br', 'gzip;q=0, br']) {
      const res = await get(url, accept === undefined ? {} : { 'accept-encoding': accept });
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-encoding'], undefined, `${accept}: sent decompressed, not re-encoded`);
      assert.equal(res.body, text, String(accept));
      assert.equal(res.headers['content-type'], 'text/csv; charset=utf-8');
      assert.equal(res.headers['content-disposition'], `attachment; filename="${name}"`);
    }
  });

  it('parses Accept-Encoding', () => {
    assert.equal(acceptsGzip(undefined), false);
    assert.equal(acceptsGzip('gzip'), true);
    assert.equal(acceptsGzip('GZIP;q=1.0'), true);
    assert.equal(acceptsGzip('x-gzip'), true);
    assert.equal(acceptsGzip('*'), true);
    assert.equal(acceptsGzip('*;q=0'), false);
    assert.equal(acceptsGzip('br;q=1, gzip;q=0'), false);
    assert.equal(acceptsGzip('gzip;q=0, *'), false);
    assert.equal(acceptsGzip('deflate, br'), false);
  });

  it('404 and 409: unknown, not ready, another tenant', async () => {
    const res = await create({ metrics: ['temp'], from: FROM, to: TO, format: 'csv' });
    const id = res.json().id as string;
    const notReady = await get(`/v1/reports/${id}/download`);
    assert.equal(notReady.statusCode, 409);
    assert.match(String(notReady.headers['content-type']), /^application\/problem\+json/);
    assert.equal((await get(`/v1/reports/00000000-0000-4000-8000-000000000000`)).statusCode, 404);
    assert.equal((await get(`/v1/reports/not-a-uuid`)).statusCode, 400);
    await runJobs();
    const other = await t.key('rep-other');
    for (const url of [`/v1/reports/${id}`, `/v1/reports/${id}/download`]) {
      const r = await get(url, {}, other);
      assert.equal(r.statusCode, 404, url);
      assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
    }
    assert.deepEqual((await get('/v1/reports', {}, other)).json().items, []);
  });

  it('expiry deletes the file and marks the report expired; the download is then 404', async () => {
    const { report } = await generate({ devices: ['dev-a'], metrics: ['temp'], from: FROM, to: TO, format: 'ndjson' });
    assert.ok((await readdir(dir)).includes(`${report.id}.ndjson.gz`));
    const keep = await generate({ devices: ['dev-a'], metrics: ['temp'], from: FROM, to: TO, format: 'csv' });
    await t.db.pool.query(`update reports set expires_at = now() - interval '1 second' where id = $1`, [report.id]);
    await t.db.pool.query(`select graphile_worker.add_job('report.expire')`);
    await runJobs();
    assert.ok(!(await readdir(dir)).includes(`${report.id}.ndjson.gz`), 'file deleted');
    assert.ok((await readdir(dir)).includes(`${keep.report.id}.csv.gz`), 'an unexpired report is kept');
    assert.equal((await get(`/v1/reports/${report.id}`)).json().status, 'expired');
    assert.equal((await get(`/v1/reports/${keep.report.id}`)).json().status, 'ready');
    const dl = await get(`/v1/reports/${report.id}/download`);
    assert.equal(dl.statusCode, 404);
    assert.match(dl.json().detail, /expired/);
  });

  it('lists reports newest first in keyset pages that cover every report once', async () => {
    const k = await t.key('rep-list');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create({ metrics: ['temp'], from: FROM, to: TO, format: 'csv' }, k)).json().id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await get(`/v1/reports?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {}, k);
      assert.equal(res.statusCode, 200, res.body);
      const page = res.json() as { items: { id: string }[]; next_cursor: string | null };
      seen.push(...page.items.map((r) => r.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, ids.reverse());
    assert.equal((await get('/v1/reports?cursor=bm9wZQ', {}, k)).statusCode, 400);
  });

  it('refuses bad input with 4xx problem+json and creates nothing', async () => {
    const ok = { metrics: ['temp'], from: FROM, to: TO, format: 'csv' };
    const before = await counts();
    const cases: [object, number][] = [
      [{ ...ok, devices: ['dev-a'], status: 'active' }, 400],
      [{ ...ok, devices: ['dev-a', 'ghost'] }, 400],
      [{ ...ok, devices: [] }, 400],
      [{ ...ok, metrics: [] }, 400],
      [{ ...ok, metrics: ['bad metric'] }, 400],
      [{ ...ok, metrics: Array.from({ length: 33 }, (_, i) => `m${i}`) }, 400],
      [{ ...ok, from: TO, to: FROM }, 400],
      [{ ...ok, from: 'yesterday' }, 400],
      [{ ...ok, from: BASE - 367 * 86_400_000 }, 400],
      [{ ...ok, format: 'xlsx' }, 400],
      [{ ...ok, bucket: '5m' }, 400],
      [{ ...ok, email: 'not-an-address' }, 400],
      [{ ...ok, email: 'a@example.com, b@example.com' }, 400],
      [{ ...ok, extra: true }, 400],
      [{ metrics: ['temp'], from: FROM, to: TO }, 400],
    ];
    for (const [body, status] of cases) {
      const res = await create(body);
      assert.equal(res.statusCode, status, `${JSON.stringify(body).slice(0, 100)}: ${res.body}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    }
    const unknown = await create({ ...ok, devices: ['dev-a', 'ghost'] });
    assert.deepEqual(unknown.json().unknown_devices, ['ghost']);
    assert.deepEqual(await counts(), before);
  });

  it('caps queued reports per tenant (429 with Retry-After) and device selections by size', async () => {
    const k = await t.key('rep-pending');
    const ok = { metrics: ['temp'], from: FROM, to: TO, format: 'csv' };
    for (let i = 0; i < t.config.REPORT_MAX_PENDING; i++) assert.equal((await create(ok, k)).statusCode, 202);
    const res = await create(ok, k);
    assert.equal(res.statusCode, 429);
    assert.ok(Number(res.headers['retry-after']) > 0);

    const small = await createTestApp({ REPORT_MAX_DEVICES: 1 });
    try {
      const sk = await small.key('rep-small');
      for (const id of ['s-1', 's-2']) {
        await small.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(sk), payload: { id } });
      }
      const many = await small.app.inject({ method: 'POST', url: '/v1/reports', headers: bearer(sk), payload: ok });
      assert.equal(many.statusCode, 400);
      assert.match(many.json().detail, /at most 1 per report/);
      const listed = await small.app.inject({ method: 'POST', url: '/v1/reports', headers: bearer(sk), payload: { ...ok, devices: ['s-1', 's-2'] } });
      assert.equal(listed.statusCode, 400);
      const one = await small.app.inject({ method: 'POST', url: '/v1/reports', headers: bearer(sk), payload: { ...ok, status: 'active', devices: undefined } });
      assert.equal(one.statusCode, 400, 'two active devices');
    } finally {
      await small.close();
    }
  });

  it('queues report.ready webhook deliveries when a report is ready', async () => {
    const k = await t.key('rep-hook');
    const hook = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: bearer(k), payload: { url: 'http://127.0.0.1:1/x', events: ['report.ready'] } });
    assert.equal(hook.statusCode, 201, hook.body);
    const res = await create({ metrics: ['temp'], from: FROM, to: TO, format: 'csv' }, k);
    await runJobs();
    const { rows } = await t.db.pool.query<{ payload: { event: string; data: { id: string; status: string } } }>(
      `select j.payload from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
        where k.identifier = 'webhook.deliver' and j.payload->>'webhook_id' = $1`,
      [hook.json().id],
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.payload.event, 'report.ready');
    assert.equal(rows[0]!.payload.data.id, res.json().id);
    assert.equal(rows[0]!.payload.data.status, 'ready');
  });

  it('a failed attempt requeues the report; the last one marks it failed, with no partial file', async () => {
    const blocked = join(dir, 'not-a-directory');
    await writeFile(blocked, 'x');
    const failing = reportTasks({
      config: { ...t.config, REPORTS_DIR: join(blocked, 'reports') } as Config,
      database: t.database,
      metrics: createMetrics(),
      logger: pino({ level: 'silent' }),
    });
    const k = await t.key('rep-fail');
    const id = (await create({ metrics: ['temp'], from: FROM, to: TO, format: 'csv' }, k)).json().id as string;
    await runJobs(failing);
    let report = (await get(`/v1/reports/${id}`, {}, k)).json();
    assert.equal(report.status, 'queued');
    assert.equal(report.error, 'The report could not be generated.');
    const { rows } = await t.db.pool.query<{ id: string; max_attempts: number }>(
      `select id::text, max_attempts from graphile_worker.jobs where task_identifier = 'report.generate'`,
    );
    assert.equal(rows.length, 1);
    const utils = await makeWorkerUtils({ connectionString: t.db.url, logger: quiet });
    try {
      await utils.rescheduleJobs([rows[0]!.id], { runAt: new Date(), attempts: rows[0]!.max_attempts - 1 });
    } finally {
      await utils.release();
    }
    await runJobs(failing);
    report = (await get(`/v1/reports/${id}`, {}, k)).json();
    assert.equal(report.status, 'failed');
    assert.ok(report.finished_at);
    assert.equal((await get(`/v1/reports/${id}/download`, {}, k)).statusCode, 409);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith(id)), []);
  });
});
