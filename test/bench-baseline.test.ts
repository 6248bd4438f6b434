/**
 * The bench's "before" baseline (bench/baseline/): loaded from pulse's tables, it must
 * answer the bench's requests with the same JSON as pulse (only slower — no timing is
 * asserted here), and its writes must land.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { loadBaselineFromPulse } from '../bench/baseline/load.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';

const root = resolve(import.meta.dirname, '..');
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

async function startBaseline(databaseUrl: string): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bench/baseline/server.ts', '--port', '0', '--database-url', databaseUrl],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((done, fail) => {
    const timer = setTimeout(() => fail(new Error('baseline did not start within 20 s')), 20_000);
    child.once('exit', (code) => fail(new Error(`baseline exited with ${code}`)));
    lines.on('line', (line) => {
      const m = /^listening (\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        done(Number(m[1]));
      }
    });
  });
  return { child, base: `http://127.0.0.1:${port}` };
}

describe('bench baseline (the "before")', () => {
  let t: TestApp;
  let key: string;
  let otherKey: string;
  let baseline: { child: ChildProcess; base: string };
  // whole hours a little in the past, so `since=1d` covers them and stats ranges are exact
  const h0 = Math.floor(Date.now() / HOUR) * HOUR - 3 * HOUR;
  const old = h0 - 3 * 24 * HOUR;
  const tie = iso(h0 + 70 * 60_000 + 123).replace('Z', '456Z'); // µs precision

  const pulse = async (url: string, k = key) => {
    const res = await t.app.inject({ url, headers: bearer(k) });
    return { status: res.statusCode, body: res.json() };
  };
  const base = async (url: string, init: RequestInit = {}, k = key) => {
    const res = await fetch(`${baseline.base}${url}`, { ...init, headers: { ...bearer(k), 'content-type': 'application/json' } });
    return { status: res.status, body: await res.json() };
  };
  const pulseWrite = async (body: unknown, k = key) => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(k), payload: body as object });
    assert.equal(res.statusCode, 200, res.body);
    return res.json();
  };
  const same = async (url: string) => {
    const [p, b] = await Promise.all([pulse(url), base(url)]);
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(b.status, 200, JSON.stringify(b.body));
    // as_of is when each read its database: present in both, equal only by chance
    const { as_of: pulseAsOf, ...pulseBody } = p.body;
    const { as_of: baseAsOf, ...baseBody } = b.body;
    assert.equal(typeof pulseAsOf, typeof baseAsOf, `${url}: as_of`);
    assert.deepEqual(baseBody, pulseBody, url);
    return pulseBody;
  };

  before(async () => {
    t = await createTestApp();
    key = await t.key('acme');
    otherKey = await t.key('globex');
    // readings of one or several metrics; sensor-2's reading at h0 + 60 min is sent in
    // two parts (merged by pulse into one row), and its reading at h0 + 65 min has a
    // metric that sorts before the one it shares with its other readings
    await pulseWrite([
      { device: 'sensor-1', ts: iso(h0), metrics: { temperature: 20, humidity: 40 } },
      { device: 'sensor-1', ts: iso(h0 + 5 * 60_000), metrics: { temperature: 21.5 } },
      { device: 'sensor-1', ts: iso(h0 + 10 * 60_000), metrics: { temperature: 23 } },
      { device: 'sensor-1', ts: iso(h0 + 65 * 60_000), metrics: { temperature: 19, humidity: 41 } },
      { device: 'sensor-1', ts: tie, metrics: { temperature: 18.25 } },
      { device: 'sensor-2', ts: iso(h0 + 60 * 60_000), metrics: { temperature: 30 } },
      { device: 'sensor-2', ts: iso(old), metrics: { battery: 3.7 } },
      { device: 'sensor-old', ts: iso(old), metrics: { temperature: 1 } },
      { device: 'sensor-off', ts: iso(h0 + 30 * 60_000), metrics: { temperature: 2 } },
    ]);
    await pulseWrite([
      { device: 'sensor-2', ts: iso(h0 + 65 * 60_000), metrics: { pressure: 1000, temperature: 31 } },
      { device: 'sensor-3', ts: tie, metrics: { temperature: 5 } },
    ]);
    await pulseWrite([{ device: 'sensor-2', ts: iso(h0 + 60 * 60_000), metrics: { humidity: 55 } }]);
    await pulseWrite([{ device: 'sensor-1', ts: iso(h0 + 2 * HOUR), metrics: { temperature: 99 } }], otherKey);
    const patched = await t.app.inject({
      method: 'PATCH',
      url: '/v1/devices/sensor-off',
      headers: bearer(key),
      payload: { status: 'inactive' },
    });
    assert.equal(patched.statusCode, 200, patched.body);

    const loaded = await loadBaselineFromPulse(t.db.url, 'acme', key);
    assert.equal(loaded.rows, 16, 'one baseline row per value of every reading');
    baseline = await startBaseline(t.db.url);
  });

  after(async () => {
    if (baseline && baseline.child.exitCode === null) {
      baseline.child.kill('SIGTERM');
      await once(baseline.child, 'exit');
    }
    await t?.close();
  });

  it('loads the same rows as pulse, with only primary keys', async () => {
    const { rows } = await t.db.pool.query(
      `select tablename, indexname from pg_indexes where tablename like 'baseline\\_%' order by 1`,
    );
    assert.deepEqual(
      rows.map((r) => r.indexname),
      ['baseline_devices_pkey', 'baseline_readings_pkey'],
    );
    const devices = await t.db.pool.query(`select tenant, external_id, status from baseline_devices order by id`);
    assert.equal(devices.rows.length, 6);
    assert.deepEqual(devices.rows.find((d) => d.external_id === 'sensor-off'), { tenant: 'acme', external_id: 'sensor-off', status: 'inactive' });
    // pulse's wide readings unnested: one row per (device, metric, ts), the merged reading's parts included
    const values = await t.db.pool.query(
      `select d.external_id, r.metric, r.value from baseline_readings r join baseline_devices d on d.id = r.device_id
        where r.ts = $1 order by 1, 2`,
      [iso(h0 + 60 * 60_000)],
    );
    assert.deepEqual(values.rows.map((r) => `${r.external_id}/${r.metric}=${r.value}`), ['sensor-2/humidity=55', 'sensor-2/temperature=30']);
    const pulseValues = await t.db.pool.query(
      `select r.device_id, v.metric, r.ts, v.value
         from readings r join metric_sets m on m.id = r.metric_set cross join lateral unnest(m.names, r.vals) as v(metric, value)
        order by 1, 2, 3`,
    );
    const baselineValues = await t.db.pool.query(`select device_id::int8 as device_id, metric, ts, value from baseline_readings order by 1, 2, 3`);
    assert.deepEqual(baselineValues.rows, pulseValues.rows);
    // loading again replaces rather than duplicates
    assert.equal((await loadBaselineFromPulse(t.db.url, 'acme', key)).rows, 16);
    assert.equal((await t.db.pool.query('select count(*)::int as n from baseline_keys')).rows[0].n, 1);
  });

  it('serves a device\'s latest values like pulse', async () => {
    const body = await same('/v1/devices/sensor-1/latest');
    assert.deepEqual(body.metrics.temperature, { ts: tie, value: 18.25 });
    await same('/v1/devices/sensor-2/latest');
  });

  it('serves the dashboard like pulse', async () => {
    const body = await same('/v1/readings/latest?status=active&since=1d&limit=100');
    // sensor-1 and sensor-3 tie on the newest timestamp; sensor-2 keeps its old battery value
    assert.deepEqual(
      body.items.map((i: { device: string }) => i.device),
      ['sensor-1', 'sensor-3', 'sensor-2'],
    );
    assert.ok(body.items[2].metrics.battery);
    await same('/v1/readings/latest?status=active&since=1d&limit=2');
    await same('/v1/readings/latest?status=any&since=7d');
    await same('/v1/readings/latest?status=inactive');
    await same('/v1/readings/latest?since=1m');
  });

  it('serves range pages like pulse: one item per reading (offset pages instead of cursors)', async () => {
    const all = await same('/v1/devices/sensor-1/readings?limit=100');
    assert.equal(all.items.length, 5, 'one item per reading (device + ts), not per value');
    assert.equal(all.next_cursor, null);
    assert.deepEqual(all.items.slice(0, 2), [
      { ts: tie, metrics: { temperature: 18.25 } },
      { ts: iso(h0 + 65 * 60_000), metrics: { humidity: 41, temperature: 19 } },
    ]);
    const sensor2 = await same('/v1/devices/sensor-2/readings');
    assert.deepEqual(sensor2.items, [
      { ts: iso(h0 + 65 * 60_000), metrics: { pressure: 1000, temperature: 31 } },
      { ts: iso(h0 + 60 * 60_000), metrics: { humidity: 55, temperature: 30 } }, // sent in two parts
      { ts: iso(old), metrics: { battery: 3.7 } },
    ]);
    // with a metric: only the readings that have it, with only that metric
    const humidity = await same('/v1/devices/sensor-1/readings?metric=humidity');
    assert.deepEqual(humidity.items, [
      { ts: iso(h0 + 65 * 60_000), metrics: { humidity: 41 } },
      { ts: iso(h0), metrics: { humidity: 40 } },
    ]);
    await same('/v1/devices/sensor-2/readings?metric=temperature');
    await same(`/v1/devices/sensor-1/readings?metric=temperature&from=${iso(h0)}&to=${encodeURIComponent(tie)}&limit=10`);
    await same(`/v1/devices/sensor-1/readings?from=${h0 + 5 * 60_000}&to=${h0 + HOUR * 2}`);
    // from inclusive, to exclusive, on both
    const window = await same(`/v1/devices/sensor-1/readings?from=${iso(h0 + 5 * 60_000)}&to=${iso(h0 + 65 * 60_000)}`);
    assert.deepEqual(window.items.map((i: { ts: string }) => i.ts), [iso(h0 + 10 * 60_000), iso(h0 + 5 * 60_000)]);
    assert.deepEqual(await same('/v1/devices/sensor-1/readings?metric=nothing'), { device: 'sensor-1', items: [], next_cursor: null });

    // pulse pages with a cursor, the baseline with ?page=: the same readings, page by page
    for (const query of ['limit=1', 'limit=2', 'limit=3', 'limit=5', 'limit=1&metric=humidity', 'limit=2&metric=temperature']) {
      const pulsePages: unknown[][] = [];
      let cursor: string | null = null;
      do {
        const p = await pulse(`/v1/devices/sensor-1/readings?${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        assert.equal(p.status, 200, JSON.stringify(p.body));
        pulsePages.push(p.body.items);
        cursor = p.body.next_cursor;
      } while (cursor !== null && pulsePages.length < 100);
      for (const [i, items] of pulsePages.entries()) {
        const b = await base(`/v1/devices/sensor-1/readings?${query}&page=${i + 1}`);
        assert.equal(b.status, 200, JSON.stringify(b.body));
        assert.deepEqual(b.body.items, items, `${query}, page ${i + 1}`);
        assert.equal(b.body.next_cursor, null);
      }
      const whole = await same(`/v1/devices/sensor-1/readings?${query.replace(/limit=\d+/, 'limit=100')}`);
      assert.deepEqual(pulsePages.flat(), whole.items, `${query}: the pages cover every reading once`);
    }
  });

  it('serves hourly stats like pulse, computed in JavaScript', async () => {
    const body = await same(`/v1/devices/sensor-1/stats?metric=temperature&from=${iso(h0)}&to=${iso(h0 + 3 * HOUR)}&bucket=1h`);
    assert.deepEqual(body.buckets[0], { ts: iso(h0), count: 3, min: 20, max: 23, avg: 64.5 / 3, sum: 64.5, first: 20, last: 23 });
    await same(`/v1/devices/sensor-1/stats?metric=temperature&from=${iso(h0)}&to=${iso(h0 + 3 * HOUR)}&bucket=1m`);
    await same(`/v1/devices/sensor-2/stats?metric=battery&from=${iso(old - HOUR)}&to=${iso(h0)}&bucket=1d`);
    await same(`/v1/devices/sensor-1/stats?metric=nothing&from=${iso(h0)}&to=${iso(h0 + HOUR)}`);
  });

  it('answers errors as JSON: unknown device, bad key, bad input, other tenant', async () => {
    const missing = await base('/v1/devices/nope/latest');
    assert.equal(missing.status, 404);
    assert.equal((await pulse('/v1/devices/nope/latest')).status, 404);
    assert.equal((await base('/v1/devices/sensor-1/latest', {}, 'wrong-key')).status, 401);
    assert.equal((await base('/v1/devices/sensor-1/readings?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z')).status, 400);
    assert.equal((await base('/v1/readings/latest?since=forever')).status, 400);
    // globex's key was not loaded into the baseline; its sensor-1 never shows for acme
    const latest = await base('/v1/devices/sensor-1/latest');
    assert.notEqual(latest.body.metrics.temperature.value, 99);
    const bad = await base('/v1/readings', { method: 'POST', body: JSON.stringify([{ device: 'x', metrics: { t: 'hot' } }]) });
    assert.equal(bad.status, 400);
    assert.equal(typeof bad.body.detail, 'string');
    const broken = await base('/v1/readings', { method: 'POST', body: '[{' });
    assert.equal(broken.status, 400);
  });

  it('writes readings one INSERT per value, and reads them back like pulse', async () => {
    const queriesBefore = (await (await fetch(`${baseline.base}/__stats`)).json()).queries as number;
    const body = [
      { device: 'sensor-1', ts: iso(h0 + 2 * HOUR), metrics: { temperature: 17, humidity: 42 } },
      { device: 'sensor-new', ts: iso(h0 + 2 * HOUR), metrics: { temperature: 7 } },
      { device: 'sensor-new', ts: iso(h0 + 2 * HOUR), metrics: { temperature: 8 } }, // same ts again: last wins
    ];
    const written = await base('/v1/readings', { method: 'POST', body: JSON.stringify(body) });
    assert.equal(written.status, 200, JSON.stringify(written.body));
    assert.deepEqual(written.body, await pulseWrite(body));
    assert.deepEqual(written.body, { readings: 3, values: 3, devices: 2 });

    const { rows } = await t.db.pool.query(
      `select d.external_id, r.metric, r.value from baseline_readings r join baseline_devices d on d.id = r.device_id
        where r.ts = $1 and d.tenant = 'acme' order by r.id`,
      [iso(h0 + 2 * HOUR)],
    );
    assert.deepEqual(
      rows.map((r) => `${r.external_id}/${r.metric}=${r.value}`),
      ['sensor-1/temperature=17', 'sensor-1/humidity=42', 'sensor-new/temperature=7', 'sensor-new/temperature=8'],
    );
    // key + (device SELECT per reading, + INSERT for the new device) + INSERT per value
    const queriesAfter = (await (await fetch(`${baseline.base}/__stats`)).json()).queries as number;
    assert.equal(queriesAfter - queriesBefore, 1 + 3 + 1 + 4);

    await same('/v1/devices/sensor-new/latest');
    assert.deepEqual((await same('/v1/devices/sensor-new/readings')).items, [{ ts: iso(h0 + 2 * HOUR), metrics: { temperature: 8 } }]);
    await same('/v1/devices/sensor-1/readings');
    await same(`/v1/devices/sensor-new/stats?metric=temperature&from=${iso(h0)}&to=${iso(h0 + 3 * HOUR)}`);
    await same('/v1/devices/sensor-1/latest');
    await same('/v1/readings/latest?status=active&since=1d&limit=100');

    // part of an existing reading sent again: pulse merges it into the reading, the
    // baseline stores new rows whose newest value per metric wins; both read the same
    const part = [{ device: 'sensor-1', ts: iso(h0), metrics: { humidity: 45, dew: 10 } }];
    const partWritten = await base('/v1/readings', { method: 'POST', body: JSON.stringify(part) });
    assert.equal(partWritten.status, 200, JSON.stringify(partWritten.body));
    assert.deepEqual(partWritten.body, await pulseWrite(part));
    const merged = await same(`/v1/devices/sensor-1/readings?from=${iso(h0)}&to=${iso(h0 + 1)}`);
    assert.deepEqual(merged.items, [{ ts: iso(h0), metrics: { dew: 10, humidity: 45, temperature: 20 } }]);
    await same('/v1/devices/sensor-1/readings');
    await same('/v1/devices/sensor-1/readings?metric=humidity');
    await same('/v1/devices/sensor-1/latest');
    await same(`/v1/devices/sensor-1/stats?metric=humidity&from=${iso(h0)}&to=${iso(h0 + 3 * HOUR)}`);
  });

  it('counts queries and exits cleanly on SIGTERM', async () => {
    const stats = await (await fetch(`${baseline.base}/__stats`)).json();
    assert.ok(stats.queries > 0);
    baseline.child.kill('SIGTERM');
    const [code] = await once(baseline.child, 'exit');
    assert.equal(code, 0);
  });
});
