import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { rawStats } from './helpers/stats.ts';
import { refreshRollups } from '../src/modules/rollups/refresh.ts';
import { seed } from '../src/tools/seed.ts';

const HOUR = 3_600_000;
const END = Date.UTC(2026, 10, 10);
const START = END - 2 * 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString();

/** Seeded values are arbitrary doubles: sums may differ in the last bits by addition order. */
function assertClose(actual: { sum: number; avg: number }[], expected: { sum: number; avg: number }[], what: string) {
  const exact = (bs: { sum: number; avg: number }[]) => bs.map((b) => ({ ...b, sum: 0, avg: 0 }));
  assert.deepEqual(exact(actual), exact(expected), what);
  actual.forEach((b, i) => {
    const e = expected[i]!;
    assert.ok(Math.abs(b.sum - e.sum) <= 1e-9 * Math.abs(e.sum) + 1e-9, `${what}: sum ${b.sum} vs ${e.sum}`);
    assert.ok(Math.abs(b.avg - e.avg) <= 1e-9 * Math.abs(e.avg) + 1e-9, `${what}: avg ${b.avg} vs ${e.avg}`);
  });
}

describe('fleet stats: GET /v1/stats', () => {
  let t: TestApp;
  let key: string;
  let otherKey: string;
  before(async () => {
    t = await createTestApp();
    // 20 devices (sensor-10 and sensor-20 inactive) and another tenant with the same metric; rollups built by the seed
    await seed(t.database, { tenant: 'fleet-a', devices: 20, days: 2, intervalS: 600, metrics: ['temperature', 'humidity'], endUs: END * 1000 });
    await seed(t.database, { tenant: 'fleet-b', devices: 3, days: 2, intervalS: 600, metrics: ['temperature'], endUs: END * 1000 });
    key = await t.key('fleet-a', ['read', 'write']);
    otherKey = await t.key('fleet-b', ['read']);
  });
  after(() => t.close());

  const get = (url: string, k = key) => t.app.inject({ url, headers: bearer(k) });

  async function same(tenant: string, status: 'active' | 'inactive' | 'any', bucket: '1m' | '1h' | '1d', fromMs: number, toMs: number, k = key) {
    const res = await get(`/v1/stats?metric=temperature&status=${status}&bucket=${bucket}&from=${iso(fromMs)}&to=${iso(toMs)}`, k);
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.equal(body.status, status);
    const expected = await rawStats(t.db.pool, { tenant, status: status === 'any' ? null : status, metric: 'temperature', bucket, fromMs, toMs });
    assert.ok(expected.length > 0);
    assertClose(body.buckets, expected, `${tenant} ${status} ${bucket} ${iso(fromMs)}..${iso(toMs)}`);
    return body;
  }

  it('the seed left the rollups caught up', async () => {
    const { rows } = await t.db.pool.query(
      `select (select sum(count)::int from fleet_rollup_1h) as fleet, (select sum(cardinality(vals))::int from readings) as raw,
              (select count(*)::int from rollup_dirty) as dirty`,
    );
    assert.deepEqual(rows[0], { fleet: rows[0].raw, raw: 20 * 2 * 144 * 2 + 3 * 2 * 144, dirty: 0 });
  });

  it('equals a raw aggregation over the tenant’s devices of each status, aligned or not', async () => {
    for (const status of ['active', 'inactive', 'any'] as const) {
      await same('fleet-a', status, '1h', START, END);
      await same('fleet-a', status, '1d', START - HOUR, END + HOUR);
      await same('fleet-a', status, '1m', START + 7 * HOUR + 1234, START + 9 * HOUR - 4321);
      await same('fleet-a', status, '1h', START + 5 * HOUR + 17 * 60_000, END - 3 * HOUR - 1);
    }
    const any = await same('fleet-a', 'any', '1d', START, END);
    const active = await same('fleet-a', 'active', '1d', START, END);
    assert.ok(any.buckets[0].count > active.buckets[0].count, 'inactive devices only count with status=any');
  });

  it('is tenant-scoped: the other tenant sees only its devices', async () => {
    const b = await same('fleet-b', 'any', '1d', START, END, otherKey);
    assert.equal(b.buckets[0].count, 3 * 144);
  });

  it('defaults to active devices, 1h buckets and the last day', async () => {
    const body = (await get('/v1/stats?metric=temperature')).json();
    assert.equal(body.status, 'active');
    assert.equal(body.bucket, '1h');
    assert.equal(Date.parse(body.to) - Date.parse(body.from), 86_400_000);
  });

  it('a status change or a deleted device is reflected at once, and recomputed by the next refresh', async () => {
    const patch = await t.app.inject({ method: 'PATCH', url: '/v1/devices/sensor-3', headers: bearer(key), payload: { status: 'inactive' } });
    assert.equal(patch.statusCode, 200, patch.body);
    const del = await t.app.inject({ method: 'DELETE', url: '/v1/devices/sensor-4', headers: bearer(key) });
    assert.ok(del.statusCode < 300, del.body);
    const { rows } = await t.db.pool.query('select count(*)::int as n from fleet_rollup_dirty');
    assert.ok(rows[0].n > 0, 'the fleet hours of both devices are marked');
    for (const status of ['active', 'inactive', 'any'] as const) await same('fleet-a', status, '1h', START, END);
    for (let caughtUp = false; !caughtUp; ) caughtUp = (await refreshRollups(t.database.api, { nowUs: Date.now() * 1000 })).caughtUp;
    const after = await t.db.pool.query('select count(*)::int as n from fleet_rollup_dirty');
    assert.equal(after.rows[0].n, 0);
    for (const status of ['active', 'inactive', 'any'] as const) {
      await same('fleet-a', status, '1h', START, END);
      await same('fleet-a', status, '1d', START, END);
      await same('fleet-a', status, '1m', START + HOUR, START + 3 * HOUR);
    }
  });

  it('bad input is 400 problem+json; no key 401; a key without read scope 403', async () => {
    const bad = [
      '/v1/stats',
      '/v1/stats?metric=temperature&bucket=5m',
      '/v1/stats?metric=temperature&status=gone',
      '/v1/stats?metric=temperature&from=yesterday',
      `/v1/stats?metric=temperature&from=${iso(END)}&to=${iso(START)}`,
      `/v1/stats?metric=temperature&bucket=1m&from=${iso(START - 30 * 86_400_000)}&to=${iso(END)}`,
      '/v1/stats?metric=temperature&extra=1',
      '/v1/stats?metric=bad%20name',
    ];
    for (const url of bad) {
      const res = await get(url);
      assert.equal(res.statusCode, 400, `${url}: ${res.body}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assert.equal(res.json().type, '/problems/validation');
    }
    assert.equal((await t.app.inject({ url: '/v1/stats?metric=temperature' })).statusCode, 401);
    const writeOnly = await t.key('fleet-a', ['write']);
    const forbidden = await get('/v1/stats?metric=temperature', writeOnly);
    assert.equal(forbidden.statusCode, 403);
    assert.match(String(forbidden.headers['content-type']), /^application\/problem\+json/);
  });

  it('device stats answer sum, first and last too, equal to raw', async () => {
    const res = await get(`/v1/devices/sensor-5/stats?metric=humidity&bucket=1h&from=${iso(START + 1000)}&to=${iso(END - 1000)}`);
    assert.equal(res.statusCode, 200, res.body);
    const expected = await rawStats(t.db.pool, { tenant: 'fleet-a', device: 'sensor-5', metric: 'humidity', bucket: '1h', fromMs: START + 1000, toMs: END - 1000 });
    assertClose(res.json().buckets, expected, 'device');
  });
});
