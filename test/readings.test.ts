import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bearer, createTestApp, withoutAsOf, type TestApp } from './helpers/app.ts';

describe('readings', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp();
    key = await t.key('acme');
  });
  after(() => t.close());

  const post = (body: unknown, k = key) =>
    t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(k), payload: body as object });

  it('writes readings, creating the device, and serves the latest values', async () => {
    const res = await post([
      { device: 'sensor-42', ts: '2026-11-20T10:00:00Z', metrics: { temperature: 21.5, humidity: 40 } },
      { device: 'sensor-42', ts: '2026-11-20T10:05:00Z', metrics: { temperature: 22 } },
    ]);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), { readings: 2, values: 3, devices: 1 });
    const latest = await t.app.inject({ url: '/v1/devices/sensor-42/latest', headers: bearer(key) });
    assert.equal(latest.statusCode, 200);
    assert.deepEqual(withoutAsOf(latest.json()), {
      device: 'sensor-42',
      metrics: {
        humidity: { ts: '2026-11-20T10:00:00.000Z', value: 40 },
        temperature: { ts: '2026-11-20T10:05:00.000Z', value: 22 },
      },
    });
    assert.match(String(latest.headers['server-timing']), /^db;dur=[\d.]+;desc="1 queries", cache;desc=miss, total;dur=/);
    // the same question again is answered from memory, with no query
    const again = await t.app.inject({ url: '/v1/devices/sensor-42/latest', headers: bearer(key) });
    assert.match(String(again.headers['server-timing']), /^db;dur=0.00;desc="0 queries", cache;desc=l1, total;dur=/);
  });

  it('keeps the newest value in latest when an older reading arrives later', async () => {
    await post([{ device: 'late-1', ts: '2026-11-20T12:00:00Z', metrics: { t: 2 } }]);
    await post([{ device: 'late-1', ts: '2026-11-20T11:00:00Z', metrics: { t: 1 } }]);
    const latest = await t.app.inject({ url: '/v1/devices/late-1/latest', headers: bearer(key) });
    assert.deepEqual(latest.json().metrics.t, { ts: '2026-11-20T12:00:00.000Z', value: 2 });
  });

  it('keeps metrics named null or NULL as they were sent', async () => {
    const res = await post([{ device: 'null-names', ts: '2026-11-20T10:00:00Z', metrics: { null: 1, NULL: 2, b: 3 } }]);
    assert.equal(res.statusCode, 200, res.body);
    const page = await t.app.inject({ url: '/v1/devices/null-names/readings', headers: bearer(key) });
    assert.deepEqual(page.json().items[0].metrics, { NULL: 2, b: 3, null: 1 });
    const latest = await t.app.inject({ url: '/v1/devices/null-names/latest', headers: bearer(key) });
    assert.deepEqual(Object.keys(latest.json().metrics).sort(), ['NULL', 'b', 'null']);
  });

  const stored = async (device: string) =>
    (
      await t.db.pool.query(
        `select m.names, r.vals from readings r join metric_sets m on m.id = r.metric_set join devices d on d.id = r.device_id
          where d.external_id = $1 order by r.ts`,
        [device],
      )
    ).rows;

  it('overwrites a value sent again for the same device, metric and timestamp', async () => {
    await post([{ device: 'dup-1', ts: 1795000000000, metrics: { t: 1 } }]);
    await post([{ device: 'dup-1', ts: 1795000000000, metrics: { t: 5 } }]);
    assert.deepEqual(await stored('dup-1'), [{ names: ['t'], vals: [5] }]);
  });

  it('merges the parts of one reading sent in separate requests', async () => {
    await post([{ device: 'parts-1', ts: 1795000000000, metrics: { temperature: 20, humidity: 40 } }]);
    await post([{ device: 'parts-1', ts: 1795000000000, metrics: { pressure: 1000, humidity: 41 } }]);
    assert.deepEqual(await stored('parts-1'), [{ names: ['humidity', 'pressure', 'temperature'], vals: [41, 1000, 20] }]);
    // a subset of what is stored replaces only its own values
    await post([{ device: 'parts-1', ts: 1795000000000, metrics: { temperature: 19 } }]);
    assert.deepEqual(await stored('parts-1'), [{ names: ['humidity', 'pressure', 'temperature'], vals: [41, 1000, 19] }]);
  });

  it('merges the parts of one reading within a request, the later value winning', async () => {
    const res = await post([
      { device: 'parts-2', ts: 1795000000000, metrics: { a: 1, b: 2 } },
      { device: 'parts-2', ts: 1795000000000, metrics: { b: 3, c: 4 } },
    ]);
    assert.deepEqual(res.json(), { readings: 2, values: 3, devices: 1 });
    assert.deepEqual(await stored('parts-2'), [{ names: ['a', 'b', 'c'], vals: [1, 3, 4] }]);
  });

  it('pages recent readings (the two-day window) and older ones (the fallback) without gaps', async () => {
    const now = Date.now();
    const recent = Array.from({ length: 150 }, (_, i) => ({ device: 'pages-1', ts: now - 60_000 - i * 1000, metrics: { t: i } }));
    const old = Array.from({ length: 30 }, (_, i) => ({ device: 'pages-1', ts: now - 5 * 86_400_000 - i * 1000, metrics: { t: 1000 + i } }));
    assert.equal((await post([...recent, ...old])).statusCode, 200);
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/devices/pages-1/readings?metric=t&limit=100${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await t.app.inject({ url, headers: bearer(key) })).json();
      seen.push(...page.items.map((i: { metrics: { t: number } }) => i.metrics.t));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, [...recent, ...old].map((r) => r.metrics.t));
  });
});
