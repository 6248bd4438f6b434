import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestApp, type TestApp } from './helpers/app.ts';
import { ExplainDb, indexesUsed, readingsSeqScans, walkPlan } from '../src/infra/explain.ts';
import * as repo from '../src/modules/readings/repository.ts';
import { seed } from '../src/tools/seed.ts';
import { planRead } from '../src/modules/stats/plan.ts';
import * as statsRepo from '../src/modules/stats/repository.ts';

/**
 * The hot queries' plans on a table large enough for the planner to care (200 devices ×
 * 4 days × 5 min ≈ 230k readings in daily partitions): index scans, never a sequential
 * scan of readings.
 */
describe('query plans', () => {
  let t: TestApp;
  let tenantId: number;
  const endUs = Date.UTC(2026, 10, 20) * 1000;
  const startUs = endUs - 4 * 86_400e6;

  before(async () => {
    t = await createTestApp();
    ({ tenantId } = await seed(t.database, {
      tenant: 'plans',
      devices: 200,
      days: 4,
      intervalS: 300,
      metrics: ['temperature', 'humidity', 'pressure'],
      endUs,
    }));
  });
  after(() => t.close());

  async function explain(run: (db: ExplainDb) => Promise<unknown>) {
    const db = new ExplainDb(t.database.api, true);
    await run(db);
    assert.equal(db.explained.length, 1);
    return db.explained[0]!;
  }
  const relations = (plan: Parameters<typeof walkPlan>[0]) =>
    [...walkPlan(plan)].map((n) => n['Relation Name']).filter((r): r is string => !!r);

  it('has enough rows for the planner to prefer indexes', async () => {
    const { rows } = await t.db.pool.query('select count(*)::int as n from readings');
    assert.ok(rows[0].n > 200_000, `seeded ${rows[0].n} rows`);
  });

  it('range page (one metric): primary-key index scans, no sequential scan of readings', async () => {
    const q = await explain((db) => repo.rangePage(db, tenantId, 'sensor-7', 'temperature', 0, endUs - 86_400e6, 100));
    assert.deepEqual(readingsSeqScans(q.plan), []);
    assert.ok(indexesUsed(q.plan).some((i) => /^readings_.*pkey$/.test(i)), JSON.stringify(indexesUsed(q.plan)));
  });

  it('range page (all metrics): primary-key index scans, no sequential scan of readings', async () => {
    const q = await explain((db) => repo.rangePage(db, tenantId, 'sensor-7', null, 0, endUs, 100));
    assert.deepEqual(readingsSeqScans(q.plan), []);
    assert.ok(indexesUsed(q.plan).some((i) => /^readings_.*pkey$/.test(i)), JSON.stringify(indexesUsed(q.plan)));
  });

  it('hourly stats of one device over the whole range, read raw (rollups off): index scans, no sequential scan of readings', async () => {
    const q = await explain((db) => statsRepo.deviceStats(db, tenantId, 'sensor-7', 'temperature', '1h', planRead(startUs, endUs, '1h', null)));
    // a generic plan lists every partition; the ones pruned at run time never run
    assert.deepEqual(readingsSeqScans(q.plan).filter((n) => (n['Actual Loops'] ?? 0) > 0), []);
    assert.ok(indexesUsed(q.plan).some((i) => /^readings_.*pkey$/.test(i)), JSON.stringify(indexesUsed(q.plan)));
  });

  it('device stats ask for a generic plan: they run on the generic pool, other reads (dashboards) and transactions do not', async () => {
    const ran = async () => {
      const h = (await t.app.pulse.metrics.dbQueries.get()).values.filter((v) => v.metricName?.endsWith('_count'));
      return (query: string, pool: string) => h.find((v) => v.labels.query === query && v.labels.pool === pool)?.value ?? 0;
    };
    const plan = planRead(startUs, endUs, '1h', null);
    const before = await ran();
    const rows = await statsRepo.deviceStats(t.database.api, tenantId, 'sensor-7', 'temperature', '1h', plan);
    assert.ok(rows[0]!.buckets.startsWith('{"ts":"'), rows[0]!.buckets.slice(0, 80));
    await t.database.api.tx((tx) => statsRepo.deviceStats(tx, tenantId, 'sensor-7', 'temperature', '1h', plan));
    await statsRepo.fleetStats(t.database.api, tenantId, null, 'temperature', '1h', plan);
    const active = await repo.dashboard(t.database.api, tenantId, 'active', startUs, 100);
    const any = await repo.dashboard(t.database.api, tenantId, null, startUs, 100);
    const after = await ran();
    assert.ok(active.length > 0 && any.length >= active.length, `${active.length} active, ${any.length} any`);
    // dashboards keep custom plans: a generic one is fitted to an average tenant
    assert.equal(after('readings.dashboard', 'query') - before('readings.dashboard', 'query'), 2, 'dashboards (a status, any status): query pool');
    assert.equal(after('readings.dashboard', 'generic') - before('readings.dashboard', 'generic'), 0, 'dashboards: not generic');
    assert.equal(after('stats.device.1h', 'generic') - before('stats.device.1h', 'generic'), 1, 'the read: generic pool');
    assert.equal(after('stats.device.1h', 'query') - before('stats.device.1h', 'query'), 1, 'in a transaction: its connection');
    assert.equal(after('stats.fleet.all.1h', 'generic') - before('stats.fleet.all.1h', 'generic'), 0, 'fleet stats: not generic');
    const mode = async (pool: 'generic' | 'query') => (await t.database.pools[pool].query('show plan_cache_mode')).rows[0].plan_cache_mode;
    assert.equal(await mode('generic'), 'force_generic_plan');
    assert.equal(await mode('query'), 'auto');
  });

  it('latest of a device reads the latest table by its primary key, never readings', async () => {
    const q = await explain((db) => repo.latestOfDevice(db, tenantId, 'sensor-7'));
    assert.ok(!relations(q.plan).some((r) => /^readings/.test(r)), JSON.stringify(relations(q.plan)));
    assert.ok(indexesUsed(q.plan).includes('latest_pkey'), JSON.stringify(indexesUsed(q.plan)));
  });

  it('dashboard reads latest and devices, never readings', async () => {
    const q = await explain((db) => repo.dashboard(db, tenantId, 'active', startUs, 100));
    assert.ok(relations(q.plan).includes('latest'));
    assert.ok(!relations(q.plan).some((r) => /^readings/.test(r)), JSON.stringify(relations(q.plan)));
  });
  it('a write probes sessions_late_idx per written device, even when the statistics predate the completed sessions', async () => {
    const pool = t.db.pool;
    const { rows: devices } = await pool.query<{ id: string }>('select id from devices where tenant_id = $1 order by id limit 24', [tenantId]);
    // 3,000 sessions the statistics see as failed (no late probe), then completed
    await pool.query(
      `insert into sessions (tenant_id, device_id, status, started_at, completed_at)
       select $1, d.id, 'failed', now() - (g * interval '1 hour') - interval '30 minutes', now() - (g * interval '1 hour')
         from generate_series(1, 15) g cross join devices d where d.tenant_id = $1`,
      [tenantId],
    );
    await pool.query('analyze sessions');
    await pool.query(`update sessions set status = 'completed' where tenant_id = $1`, [tenantId]);
    try {
      const { rows: sets } = await pool.query<{ id: number }>('select id from metric_sets limit 1');
      const ids = devices.map((d) => Number(d.id));
      const ts = ids.map((_, i) => endUs + i);
      const q = await explain((db) =>
        repo.writeReadings(db, {
          deviceIds: ids, tsUs: ts, sets: ids.map(() => sets[0]!.id), vals: ids.map(() => '{1}'),
          latest: repo.latestParams(ids.map((id, i) => [id, new Map([['temperature', { t: ts[i]!, v: 1 }]])])),
        }),
      );
      const sessionScans = [...walkPlan(q.plan)].filter((n) => n['Relation Name'] === 'sessions' && n['Node Type'] !== 'ModifyTable');
      // the candidates: by sessions_late_idx; locking and updating them: by primary key
      assert.deepEqual([...new Set(sessionScans.map((n) => n['Index Name'] ?? n['Node Type']))].sort(), ['sessions_late_idx', 'sessions_pkey'], JSON.stringify(sessionScans.map((n) => [n['Node Type'], n['Index Name']])));
    } finally {
      await pool.query('delete from sessions where tenant_id = $1', [tenantId]);
    }
  });
});
