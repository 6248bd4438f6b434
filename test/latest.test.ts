import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';

// `latest` keeps one row per device (migrations/0008): these check its per-metric merge
// on every writer (group commit, import) against what a row per metric gave.
describe('latest values: one row per device, merged per metric', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp();
    key = await t.key('latest-merge');
  });
  after(() => t.close());

  const post = (body: unknown) => t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: body as object });
  const ndjson = (lines: unknown[]) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/readings',
      headers: { ...bearer(key), 'content-type': 'application/x-ndjson' },
      payload: lines.map((l) => JSON.stringify(l)).join('\n'),
    });
  const latest = async (device: string) => {
    const res = await t.app.inject({ url: `/v1/devices/${device}/latest`, headers: { ...bearer(key), 'cache-control': 'no-cache' } });
    assert.equal(res.statusCode, 200, res.body);
    const metrics = res.json().metrics as Record<string, { ts: string; value: number }>;
    return Object.fromEntries(Object.entries(metrics).map(([m, v]) => [m, [v.ts.slice(11, 16), v.value]]));
  };
  /** The stored row itself: its newest and oldest times must follow its values. */
  const row = async (device: string) =>
    (
      await t.db.pool.query(
        `select l.names, l.tss::text[] as tss, l.vals, to_char(l.ts at time zone 'UTC', 'HH24:MI') as ts, to_char(l.ts_min at time zone 'UTC', 'HH24:MI') as ts_min
           from latest l join devices d on d.id = l.device_id join tenants n on n.id = d.tenant_id
          where n.name = 'latest-merge' and d.external_id = $1`,
        [device],
      )
    ).rows[0];

  for (const [path, write] of [
    ['group commit', (readings: unknown[]) => post(readings)],
    ['import', (readings: unknown[]) => ndjson(readings)],
  ] as const) {
    it(`${path}: each metric moves forward on its own, whatever metrics a reading carries`, async () => {
      const d = `merge-${path === 'import' ? 'i' : 'g'}`;
      assert.equal((await write([{ device: d, ts: '2026-11-20T10:00:00Z', metrics: { a: 1, b: 1 } }])).statusCode, 200);
      // older, with a metric already newer (b: stays) and one not seen yet (c: added)
      assert.equal((await write([{ device: d, ts: '2026-11-20T09:00:00Z', metrics: { b: 2, c: 2 } }])).statusCode, 200);
      assert.deepEqual(await latest(d), { a: ['10:00', 1], b: ['10:00', 1], c: ['09:00', 2] });
      // newer, one metric only: the others keep their values and times
      assert.equal((await write([{ device: d, ts: '2026-11-20T11:00:00Z', metrics: { a: 3 } }])).statusCode, 200);
      assert.deepEqual(await latest(d), { a: ['11:00', 3], b: ['10:00', 1], c: ['09:00', 2] });
      // the same time again: the newer write wins, as a reading sent again overwrites
      assert.equal((await write([{ device: d, ts: '2026-11-20T11:00:00Z', metrics: { a: 4 } }])).statusCode, 200);
      // wholly older with the same names: nothing changes
      assert.equal((await write([{ device: d, ts: '2026-11-20T08:00:00Z', metrics: { a: 9, b: 9, c: 9 } }])).statusCode, 200);
      assert.deepEqual(await latest(d), { a: ['11:00', 4], b: ['10:00', 1], c: ['09:00', 2] });
      const r = await row(d);
      assert.deepEqual(r.names, ['a', 'b', 'c']);
      assert.deepEqual(r.vals, [4, 1, 2]);
      assert.equal(r.ts, '11:00');
      assert.equal(r.ts_min, '09:00');
    });

    it(`${path}: readings of one device with different metrics in one write are merged into its row`, async () => {
      const d = `one-write-${path === 'import' ? 'i' : 'g'}`;
      const res = await write([
        { device: d, ts: '2026-11-20T10:00:00Z', metrics: { x: 1, y: 1 } },
        { device: d, ts: '2026-11-20T12:00:00Z', metrics: { y: 2 } },
        { device: d, ts: '2026-11-20T11:00:00Z', metrics: { z: 3 } },
      ]);
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(await latest(d), { x: ['10:00', 1], y: ['12:00', 2], z: ['11:00', 3] });
      assert.equal((await row(d)).ts_min, '10:00');
    });
  }

  it('names sort in byte order, and a metric may be called null', async () => {
    const res = await post([{ device: 'names-1', ts: '2026-11-20T10:00:00Z', metrics: { null: 1, NULL: 2, b: 3, B_2: 4 } }]);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual((await row('names-1')).names, ['B_2', 'NULL', 'b', 'null']);
    assert.deepEqual(await latest('names-1'), { B_2: ['10:00', 4], NULL: ['10:00', 2], b: ['10:00', 3], null: ['10:00', 1] });
    // the reading itself keeps the names too (its metric set)
    const page = await t.app.inject({ url: '/v1/devices/names-1/readings', headers: bearer(key) });
    assert.deepEqual(page.json().items[0].metrics, { B_2: 4, NULL: 2, b: 3, null: 1 });
  });

  it('the dashboard orders devices by their newest metric and lists every metric', async () => {
    const now = Date.now();
    const iso = (minAgo: number) => new Date(now - minAgo * 60_000).toISOString();
    await post([{ device: 'dash-old', ts: iso(30), metrics: { p: 1 } }]);
    await post([{ device: 'dash-new', ts: iso(20), metrics: { p: 2, q: 2 } }]);
    // an older reading of a new metric does not move the device forward
    await post([{ device: 'dash-old', ts: iso(40), metrics: { q: 1 } }]);
    const res = await t.app.inject({ url: '/v1/readings/latest?since=1h&status=any', headers: bearer(key) });
    assert.equal(res.statusCode, 200, res.body);
    const items = res.json().items as { device: string; ts: string; metrics: Record<string, { ts: string; value: number }> }[];
    const mine = items.filter((i) => i.device.startsWith('dash-'));
    assert.deepEqual(mine.map((i) => [i.device, i.ts, Object.keys(i.metrics)]), [
      ['dash-new', iso(20), ['p', 'q']],
      ['dash-old', iso(30), ['p', 'q']],
    ]);
    assert.deepEqual(mine[1]!.metrics.q, { ts: iso(40), value: 1 });
  });
});
