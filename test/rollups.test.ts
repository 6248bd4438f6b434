import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import pino from 'pino';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { assertSameStats, rawStats } from './helpers/stats.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { Database } from '../src/infra/db.ts';
import { ExplainDb, indexesUsed, readingsSeqScans } from '../src/infra/explain.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { enqueue } from '../src/jobs/enqueue.ts';
import { startJobRunner } from '../src/jobs/runner.ts';
import { cronItems } from '../src/jobs/tasks.ts';
import { ROLLUPS_TASK } from '../src/modules/rollups/jobs.ts';
import { refreshRollups } from '../src/modules/rollups/refresh.ts';
import { planRead } from '../src/modules/stats/plan.ts';
import * as statsRepo from '../src/modules/stats/repository.ts';
import { seed } from '../src/tools/seed.ts';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const MINUTE = 60_000;
const BASE = Date.UTC(2026, 5, 1); // every property run gets its own week after this
const iso = (ms: number) => new Date(ms).toISOString();
const DEVICES = ['rp-0', 'rp-1', 'rp-2'];
const METRICS = ['a', 'b', 'c'];

type Reading = { device: string; ts: string; metrics: Record<string, number> };

/** Readings of DEVICES within [base, base + 2 days) on a 30 s grid (so (device, ts) repeats), values in 1/16. */
const readingsArb = (base: number) =>
  fc.array(
    fc.record({
      d: fc.integer({ min: 0, max: DEVICES.length - 1 }),
      slot: fc.integer({ min: 0, max: (2 * DAY) / 30_000 - 1 }),
      metrics: fc.dictionary(fc.constantFrom(...METRICS), fc.integer({ min: -16_000, max: 16_000 }).map((v) => v / 16), { minKeys: 1 }),
    }),
    { minLength: 1, maxLength: 120 },
  ).map((rs) => rs.map((r): Reading => ({ device: DEVICES[r.d]!, ts: iso(base + r.slot * 30_000), metrics: r.metrics })));

const queryArb = (base: number) =>
  fc.record({
    from: fc.integer({ min: -HOUR, max: 2 * DAY }),
    len: fc.integer({ min: 1, max: 2 * DAY + HOUR }),
    bucket: fc.constantFrom('1m' as const, '1h' as const, '1d' as const),
    metric: fc.constantFrom(...METRICS),
    device: fc.constantFrom(...DEVICES),
  }).map((q) => ({ ...q, fromMs: base + q.from, toMs: base + q.from + q.len }));

describe('rollups', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    // the scheduler is off here (long interval): each test drives refreshRollups itself
    t = await createTestApp();
    key = await t.key('rollup-a');
    for (const [i, id] of DEVICES.entries()) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(key), payload: { id, status: i === 2 ? 'inactive' : 'active' } });
      assert.equal(res.statusCode, 201, res.body);
    }
  });
  after(() => t.close());

  async function write(readings: Reading[], ndjson: boolean) {
    const res = ndjson
      ? await t.app.inject({
          method: 'POST',
          url: '/v1/readings',
          headers: { ...bearer(key), 'content-type': 'application/x-ndjson' },
          payload: readings.map((r) => JSON.stringify(r)).join('\n'),
        })
      : await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: readings });
    assert.equal(res.statusCode, 200, res.body);
  }

  async function refreshAll(nowMs: number) {
    for (let i = 0; i < 50; i++) {
      const r = await refreshRollups(t.database.api, { nowUs: nowMs * 1000, lagMs: 60_000 });
      if (r.caughtUp) return r;
    }
    assert.fail('refresh did not catch up in 50 runs');
  }

  async function check(q: { fromMs: number; toMs: number; bucket: '1m' | '1h' | '1d'; metric: string; device: string }, what: string) {
    const range = `metric=${q.metric}&bucket=${q.bucket}&from=${iso(q.fromMs)}&to=${iso(q.toMs)}`;
    const dev = await t.app.inject({ url: `/v1/devices/${q.device}/stats?${range}`, headers: bearer(key) });
    assert.equal(dev.statusCode, 200, dev.body);
    assertSameStats(dev.json().buckets, await rawStats(t.db.pool, { tenant: 'rollup-a', ...q }), `${what} device ${range}`);
    for (const status of ['active', 'inactive', 'any']) {
      const fleet = await t.app.inject({ url: `/v1/stats?${range}&status=${status}`, headers: bearer(key) });
      assert.equal(fleet.statusCode, 200, fleet.body);
      const expected = await rawStats(t.db.pool, { tenant: 'rollup-a', ...q, device: undefined, status: status === 'any' ? null : status });
      assertSameStats(fleet.json().buckets, expected, `${what} fleet ${status} ${range}`);
    }
  }

  it('property: stats equal a raw aggregation before and after refreshes, with late and merged data', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constant(null).chain(() => {
          const base = BASE + run * 7 * DAY;
          return fc.record({
            base: fc.constant(base),
            first: readingsArb(base),
            late: readingsArb(base),
            // where the watermark's target lands: inside the data, or past it
            refreshAt: fc.integer({ min: HOUR, max: 3 * DAY }),
            ndjson: fc.boolean(),
            queries: fc.array(queryArb(base), { minLength: 2, maxLength: 3 }),
          });
        }),
        async (c) => {
          run++;
          await write(c.first, false);
          await refreshAll(c.base + c.refreshAt);
          for (const q of c.queries) await check(q, 'after the first refresh');
          // older data after a refresh (and merges into stored readings): marked late, read raw until recomputed
          await write(c.late, c.ndjson);
          for (const q of c.queries) await check(q, 'late data, before the refresh');
          await refreshAll(c.base + c.refreshAt + 10 * MINUTE);
          for (const q of c.queries) await check(q, 'after the second refresh');
          const { rows } = await t.db.pool.query('select count(*)::int as n from rollup_dirty');
          assert.equal(rows[0].n, 0, 'late marks below the watermark are cleared');
        },
      ),
      { numRuns: 12 },
    );
  });

  it('the watermark advances to whole minutes lag behind now, and the lag is a metric', async () => {
    const metrics = createMetrics();
    const now = BASE + 200 * DAY + 30 * 1000;
    const r = await refreshRollups(t.database.api, { nowUs: now * 1000, lagMs: 60_000, metrics, maxChunks: 1000 });
    assert.ok(r.ran);
    assert.equal(r.pendingUs, (now - 90_000) * 1000);
    assert.equal(r.doneUs, r.pendingUs);
    const { rows } = await t.db.pool.query(`select extract(epoch from done) * 1000 as ms from rollup_watermark`);
    assert.equal(Number(rows[0].ms), now - 90_000);
    const text = await metrics.registry.metrics();
    assert.match(text, /^pulse_rollup_lag_seconds 90$/m);
    assert.match(text, /^pulse_rollup_refresh_runs_total\{outcome="ok"\} 1$/m);
    // the watermark never moves back
    const again = await refreshRollups(t.database.api, { nowUs: (now - DAY) * 1000, lagMs: 60_000 });
    assert.equal(again.doneUs, r.doneUs);
  });

  it('ROLLUPS_ENABLED=false answers the same from raw readings', async () => {
    const config = loadConfig({}, { DATABASE_URL: t.db.url, LOG_LEVEL: 'silent', AUTH_CACHE_TTL_MS: 0, ROLLUPS_ENABLED: false });
    const logger = pino({ level: 'silent' });
    const metrics = createMetrics();
    const database = new Database(t.db.url, config, metrics, logger);
    const raw = await buildApp({ config, database, metrics, logger });
    // data of its own (the property runs' data is random), recomputed into the rollups
    const own = Array.from({ length: 240 }, (_, i): Reading => ({
      device: 'rp-0',
      ts: iso(BASE + 3 * HOUR + i * 10 * MINUTE + 7_000),
      metrics: { a: (i % 37) / 4, b: -(i % 11) / 8 },
    }));
    await write(own, false);
    await refreshAll(BASE + 201 * DAY);
    try {
      for (const bucket of ['1m', '1h', '1d']) {
        const url = `/v1/devices/rp-0/stats?metric=a&bucket=${bucket}&from=${iso(BASE + 3 * HOUR + 17_000)}&to=${iso(BASE + 40 * HOUR)}`;
        const a = await t.app.inject({ url, headers: bearer(key) });
        const b = await raw.inject({ url, headers: bearer(key) });
        assert.equal(a.statusCode, 200, a.body);
        assert.ok(a.json().buckets.length > 0);
        assert.deepEqual(b.json(), a.json(), url);
        const fleetUrl = `/v1/stats?metric=b&status=any&bucket=${bucket}&from=${iso(BASE)}&to=${iso(BASE + 2 * DAY)}`;
        assert.deepEqual((await raw.inject({ url: fleetUrl, headers: bearer(key) })).json(), (await t.app.inject({ url: fleetUrl, headers: bearer(key) })).json());
      }
    } finally {
      await raw.close();
      await database.close();
    }
  });
});

describe('rollups: concurrency, scheduler, plans', () => {
  let t: TestApp;
  let tenantId: number;
  const endUs = Date.UTC(2026, 10, 20) * 1000;
  const startUs = endUs - 3 * 86_400e6;
  before(async () => {
    t = await createTestApp();
    ({ tenantId } = await seed(t.database, { tenant: 'conc', devices: 60, days: 3, intervalS: 300, metrics: ['temperature', 'humidity'], endUs, rollups: false }));
  });
  after(() => t.close());

  it('concurrent refreshes from several pools do not double count', async () => {
    const pools = [t.database, ...Array.from({ length: 2 }, () => new Database(t.db.url, t.config, createMetrics(), pino({ level: 'silent' })))];
    try {
      const nowUs = endUs + 3_600e6;
      const loop = async (db: Database) => {
        let ran = 0;
        for (let i = 0; i < 2000; i++) {
          const r = await refreshRollups(db.api, { nowUs, maxChunks: 1, dirtyHours: 2 });
          if (r.ran) ran++;
          if (r.caughtUp) return ran;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        assert.fail('refresh did not catch up');
      };
      const ran = await Promise.all(pools.map(loop));
      assert.ok(ran.every((n) => n > 0), `every process refreshed at least once: ${ran}`);
    } finally {
      await Promise.all(pools.slice(1).map((p) => p.close()));
    }
    const { rows } = await t.db.pool.query(
      `select (select sum(count)::int from rollup_1m) as m, (select sum(count)::int from rollup_1h) as h,
              (select sum(count)::int from rollup_1d) as d, (select sum(count)::int from fleet_rollup_1h) as fh,
              (select sum(cardinality(vals))::int from readings) as raw`,
    );
    assert.equal(rows[0].raw, 60 * 3 * 288 * 2);
    assert.deepEqual(rows[0], { m: rows[0].raw, h: rows[0].raw, d: rows[0].raw, fh: rows[0].raw, raw: rows[0].raw });
  });

  it('the rollups.refresh job (every minute when rollups are on) advances the watermark', async () => {
    assert.ok(cronItems(loadConfig({}, {})).some((c) => c.task === ROLLUPS_TASK));
    assert.ok(!cronItems(loadConfig({}, { ROLLUPS_ENABLED: false })).some((c) => c.task === ROLLUPS_TASK));
    const app = await createTestApp();
    const runner = await startJobRunner({ url: app.db.url, config: app.config, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
    try {
      await enqueue(app.database.api, ROLLUPS_TASK, {});
      let done = null;
      for (let i = 0; i < 600 && done === null; i++) {
        await new Promise((r) => setTimeout(r, 50));
        done = (await app.db.pool.query('select done from rollup_watermark')).rows[0]?.done ?? null;
      }
      assert.notEqual(done, null, 'the watermark was set by the job');
    } finally {
      await runner.stop();
      await app.close();
    }
  });

  it('30-day-style hourly stats read rollup_1h by its index, and readings only at the edges', async () => {
    for (let caughtUp = false; !caughtUp; ) caughtUp = (await refreshRollups(t.database.api, { nowUs: endUs + 3_600e6, maxChunks: 10 })).caughtUp;
    const db = new ExplainDb(t.database.api, true);
    const doneUs = endUs;
    const plan = planRead(startUs + 1_000_000, endUs - 1, '1h', doneUs);
    await statsRepo.deviceStats(db, tenantId, 'sensor-7', 'temperature', '1h', plan);
    const q = db.explained[0]!;
    // (empty partitions of other days may get a sequential scan plan: they are never run)
    assert.deepEqual(readingsSeqScans(q.plan).filter((n) => (n['Actual Loops'] ?? 0) > 0), []);
    assert.ok(indexesUsed(q.plan).includes('rollup_1h_pkey'), JSON.stringify(indexesUsed(q.plan)));
    assert.ok(indexesUsed(q.plan).some((i) => /^readings_.*pkey$/.test(i)), JSON.stringify(indexesUsed(q.plan)));
    const fleet = new ExplainDb(t.database.api, true);
    await statsRepo.fleetStats(fleet, tenantId, 'active', 'temperature', '1h', plan);
    assert.ok(indexesUsed(fleet.explained[0]!.plan).includes('fleet_rollup_1h_pkey'), JSON.stringify(indexesUsed(fleet.explained[0]!.plan)));
  });
});
