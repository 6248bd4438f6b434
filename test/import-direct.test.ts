import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { ndjson, statementCounts } from './helpers/statements.ts';

const BASE = Date.UTC(2025, 5, 2);
const HOUR = 3_600_000;

type Line = { device: string; ts: number; metrics: Record<string, number> };


/** Statements run by `fn`, by `name:outcome`. */
async function statementsRunBy(app: TestApp['app'], fn: () => Promise<void>) {
  const before = await statementCounts(app);
  await fn();
  const after = await statementCounts(app);
  return (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
}

/**
 * The import writes a chunk either with a COPY straight into readings or, when that COPY
 * hits a stored row, through a staging table and a merging INSERT. Which one ran is read
 * from the app's own per-statement metrics (every statement is counted by name).
 */
describe('streaming import: COPY into readings, merge on collision', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp();
    key = await t.key('direct');
  });
  after(() => t.close());

  const importNdjson = (body: string, k = key) =>
    t.app.inject({ method: 'POST', url: '/v1/readings', headers: { ...bearer(k), 'content-type': 'application/x-ndjson' }, payload: body });

  const statementsOf = (fn: () => Promise<void>) => statementsRunBy(t.app, fn);

  /** A device's stored readings as lines (metric names → values), oldest first. */
  async function rowsOf(device: string) {
    const { rows } = await t.db.pool.query(
      `select (extract(epoch from r.ts) * 1000)::float8 as ts, m.names, r.vals
         from readings r join metric_sets m on m.id = r.metric_set join devices d on d.id = r.device_id
        where d.external_id = $1 order by r.ts`,
      [device],
    );
    return rows.map((r: { ts: number; names: string[]; vals: number[] }) => ({ ts: r.ts, metrics: Object.fromEntries(r.names.map((n, i) => [n, r.vals[i]])) }));
  }
  async function latestOf(device: string) {
    const { rows } = await t.db.pool.query(
      `select l.metric, l.value, (extract(epoch from l.ts) * 1000)::float8 as ts from latest_values l join devices d on d.id = l.device_id
        where d.external_id = $1 order by l.metric`,
      [device],
    );
    return rows;
  }
  const count = async (sql: string, params: unknown[] = []) => Number((await t.db.pool.query(sql, params)).rows[0].n);

  it('COPYs a new import straight into readings, in several chunks, with no staging or merge', async () => {
    const lines: Line[] = Array.from({ length: 30_000 }, (_, i) => ({
      device: `direct-${i % 50}`,
      ts: BASE + Math.floor(i / 50) * 1000,
      metrics: { t: i, h: i % 7 },
    }));
    let res!: Awaited<ReturnType<typeof importNdjson>>;
    const ran = await statementsOf(async () => {
      res = await importNdjson(ndjson(lines));
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual({ ...(res.json() as object), seconds: 0 }, { readings: 30_000, values: 60_000, devices: 50, seconds: 0 });
    assert.ok(ran('import.copy_readings:ok') >= 2, `several chunks COPYed into readings (${ran('import.copy_readings:ok')})`);
    assert.equal(ran('import.copy_readings:error'), 0);
    assert.equal(ran('import.copy_staging:ok'), 0, 'nothing staged');
    assert.equal(ran('import.merge_chunk:ok'), 0, 'nothing merged');

    assert.equal(await count(`select count(*) as n from readings r join devices d on d.id = r.device_id where d.external_id like 'direct-%'`), 30_000);
    assert.equal(
      await count(`select sum(r.vals[2])::int8 as n from readings r join devices d on d.id = r.device_id where d.external_id like 'direct-%'`),
      (30_000 * 29_999) / 2,
      'every value of t stored (names sort as {h,t})',
    );
    const last = lines[lines.length - 1]!;
    assert.deepEqual(await latestOf(last.device), [
      { metric: 'h', value: last.metrics.h, ts: last.ts },
      { metric: 't', value: last.metrics.t, ts: last.ts },
    ]);
  });

  it('stores times and values exactly (binary COPY): µs, before 2000, float extremes', async () => {
    const body = [
      '{"device":"exact-1","ts":"1970-01-01T00:00:00.000001Z","metrics":{"a":0.30000000000000004,"b":-0}}',
      '{"device":"exact-1","ts":"1999-12-31T23:59:59.999999Z","metrics":{"a":1e300,"b":5e-324}}',
      '{"device":"exact-1","ts":"2000-01-01T00:00:00Z","metrics":{"a":-2.5,"b":9007199254740993}}',
      '{"device":"exact-1","ts":"2025-06-02T12:34:56.789012Z","metrics":{"a":-1.7976931348623157e308}}',
    ].join('\n');
    const res = await importNdjson(body);
    assert.equal(res.statusCode, 200, res.body);
    const { rows } = await t.db.pool.query(
      `select (extract(epoch from r.ts) * 1000000)::int8::text as us, m.names, r.vals, r.vals::text as text
         from readings r join metric_sets m on m.id = r.metric_set join devices d on d.id = r.device_id
        where d.external_id = 'exact-1' order by r.ts`,
    );
    assert.deepEqual(
      rows.map((r: { us: string; names: string[]; vals: number[] }) => ({ us: r.us, names: r.names, vals: r.vals })),
      [
        { us: '1', names: ['a', 'b'], vals: [0.30000000000000004, 0] },
        { us: '946684799999999', names: ['a', 'b'], vals: [1e300, 5e-324] },
        { us: '946684800000000', names: ['a', 'b'], vals: [-2.5, 9007199254740992] },
        { us: String(Date.UTC(2025, 5, 2, 12, 34, 56, 789) * 1000 + 12), names: ['a'], vals: [-1.7976931348623157e308] },
      ],
    );
    assert.equal(rows[0].text, '{0.30000000000000004,0}', 'not -0');
  });

  it('merges an import that overlaps stored readings, per metric, through the chunk fallback', async () => {
    const stored = await t.app.inject({
      method: 'POST',
      url: '/v1/readings',
      headers: bearer(key),
      payload: [
        { device: 'ov-1', ts: BASE, metrics: { a: 1, b: 2 } },
        { device: 'ov-1', ts: BASE + 1000, metrics: { a: 5 } },
      ],
    });
    assert.equal(stored.statusCode, 200, stored.body);
    const lines: Line[] = Array.from({ length: 12_000 }, (_, i) => ({ device: 'ov-2', ts: BASE + i * 1000, metrics: { x: i } }));
    // the overlapping line sits in a later chunk than the first: earlier chunks stay direct
    lines[8000] = { device: 'ov-1', ts: BASE, metrics: { b: 20, c: 30 } };
    lines[8001] = { device: 'ov-1', ts: BASE + 2000, metrics: { a: 7 } };
    let res!: Awaited<ReturnType<typeof importNdjson>>;
    const ran = await statementsOf(async () => {
      res = await importNdjson(ndjson(lines));
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.ok(ran('import.copy_readings:error') >= 1, 'a COPY hit the stored reading');
    assert.ok(ran('import.merge_chunk:ok') >= 1, 'that chunk was merged');
    assert.ok(ran('import.copy_readings:ok') >= 1, 'the other chunks were COPYed');

    assert.deepEqual(await rowsOf('ov-1'), [
      { ts: BASE, metrics: { a: 1, b: 20, c: 30 } },
      { ts: BASE + 1000, metrics: { a: 5 } },
      { ts: BASE + 2000, metrics: { a: 7 } },
    ]);
    const ov2 = await rowsOf('ov-2');
    assert.equal(ov2.length, 11_998);
    assert.deepEqual(ov2[0], { ts: BASE, metrics: { x: 0 } });
    assert.deepEqual(ov2[ov2.length - 1], { ts: BASE + 11_999_000, metrics: { x: 11_999 } });
    assert.deepEqual(await latestOf('ov-1'), [
      { metric: 'a', value: 7, ts: BASE + 2000 },
      { metric: 'b', value: 20, ts: BASE },
      { metric: 'c', value: 30, ts: BASE },
    ]);
  });

  it('merges a (device, ts) that the import repeats, across chunks and within one, the later line winning per metric', async () => {
    const T = BASE + 5 * HOUR;
    const lines: Line[] = Array.from({ length: 30_000 }, (_, i) => ({ device: `rp-${i % 10}`, ts: BASE + i * 1000, metrics: { v: i } }));
    lines[0] = { device: 'rp-dup', ts: T, metrics: { a: 1, b: 2 } };
    lines[12_000] = { device: 'rp-dup', ts: T, metrics: { b: 3 } };
    lines[24_000] = { device: 'rp-dup', ts: T, metrics: { a: 4 } };
    lines[24_001] = { device: 'rp-dup', ts: T, metrics: { c: 5 } };
    lines[24_002] = { device: 'rp-dup', ts: T + 1000, metrics: { a: 6 } };
    lines[29_999] = { device: 'rp-dup', ts: T + 1000, metrics: { a: 8 } };
    const res = await importNdjson(ndjson(lines));
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual({ ...(res.json() as object), seconds: 0 }, { readings: 30_000, values: 30_001, devices: 11, seconds: 0 });
    assert.deepEqual(await rowsOf('rp-dup'), [
      { ts: T, metrics: { a: 4, b: 3, c: 5 } },
      { ts: T + 1000, metrics: { a: 8 } },
    ]);
    assert.deepEqual(await latestOf('rp-dup'), [
      { metric: 'a', value: 8, ts: T + 1000 },
      { metric: 'b', value: 3, ts: T },
      { metric: 'c', value: 5, ts: T },
    ]);
    assert.equal(await count(`select count(*) as n from readings r join devices d on d.id = r.device_id where d.external_id like 'rp-%'`), 30_000 - 4);
  });

  it('fails with 422 and writes nothing when a device is unknown and auto-creation is off', async () => {
    const admin = await t.key('strict-import');
    await t.db.pool.query(`update tenants set auto_create_devices = false where name = 'strict-import'`);
    assert.equal((await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(admin), payload: { id: 'known-1' } })).statusCode, 201);
    // the first chunk only names the known device: it is written before the unknown ones show up
    const lines: Line[] = Array.from({ length: 9000 }, (_, i) => ({ device: 'known-1', ts: BASE + i * 1000, metrics: { a: i } }));
    lines[7000] = { device: 'ghost-2', ts: BASE, metrics: { a: 1 } };
    lines[7001] = { device: 'ghost-1', ts: BASE, metrics: { a: 1 } };
    const res = await importNdjson(ndjson(lines), admin);
    assert.equal(res.statusCode, 422, res.body);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.equal(res.json().type, '/problems/unknown-device');
    assert.deepEqual(res.json().devices, ['ghost-1', 'ghost-2']);
    const tenant = `(select id from tenants where name = 'strict-import')`;
    assert.equal(await count(`select count(*) as n from readings r join devices d on d.id = r.device_id where d.tenant_id = ${tenant}`), 0);
    assert.equal(await count(`select count(*) as n from latest_values l join devices d on d.id = l.device_id where d.tenant_id = ${tenant}`), 0);
    assert.equal(await count(`select count(*) as n from devices where tenant_id = ${tenant}`), 1);
  });

  it('marks the hours of rows below the rollup watermark as dirty, in direct and merged chunks', async () => {
    const pending = BASE + 48 * HOUR;
    await t.db.pool.query(`update rollup_watermark set pending = to_timestamp($1::float8 / 1000), done = to_timestamp($1::float8 / 1000), pending_at = now()`, [pending]);
    try {
      // a stored row makes the chunk holding its repeat go through the merge path
      const stored = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device: 'late-3', ts: pending - 5 * HOUR, metrics: { a: 1 } }] });
      assert.equal(stored.statusCode, 200, stored.body);
      await t.db.pool.query(`delete from rollup_dirty where device_id in (select id from devices where external_id like 'late-%')`);

      const lines: Line[] = Array.from({ length: 9000 }, (_, i) => ({ device: 'late-1', ts: pending - 3 * HOUR + i * 2400, metrics: { a: i } }));
      lines[6000] = { device: 'late-2', ts: pending - HOUR / 2, metrics: { a: 1 } };
      lines[6001] = { device: 'late-3', ts: pending - 5 * HOUR, metrics: { b: 2 } };
      lines[6002] = { device: 'late-3', ts: pending + HOUR, metrics: { b: 3 } };
      let res!: Awaited<ReturnType<typeof importNdjson>>;
      const ran = await statementsOf(async () => {
        res = await importNdjson(ndjson(lines));
      });
      assert.equal(res.statusCode, 200, res.body);
      assert.ok(ran('import.merge_chunk:ok') >= 1 && ran('import.copy_readings:ok') >= 1, 'both paths were taken');

      const { rows } = await t.db.pool.query(
        `select d.external_id as device, (extract(epoch from r.hour) * 1000)::float8 as hour
           from rollup_dirty r join devices d on d.id = r.device_id where d.external_id like 'late-%' order by 1, 2`,
      );
      assert.deepEqual(rows, [
        { device: 'late-1', hour: pending - 3 * HOUR },
        { device: 'late-1', hour: pending - 2 * HOUR },
        { device: 'late-1', hour: pending - HOUR },
        { device: 'late-2', hour: pending - HOUR },
        { device: 'late-3', hour: pending - 5 * HOUR },
      ]);
      assert.deepEqual(await rowsOf('late-3'), [
        { ts: pending - 5 * HOUR, metrics: { a: 1, b: 2 } },
        { ts: pending + HOUR, metrics: { b: 3 } },
      ]);
    } finally {
      await t.db.pool.query(`update rollup_watermark set pending = null, done = null, pending_at = null`);
      await t.db.pool.query(`delete from rollup_dirty`);
    }
  });
});

describe('streaming import past its savepoints (IMPORT_SAVEPOINTS=0): chunks probed for stored readings', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp({ IMPORT_SAVEPOINTS: 0 });
    key = await t.key('probed');
  });
  after(() => t.close());

  const importNdjson = (body: string) =>
    t.app.inject({ method: 'POST', url: '/v1/readings', headers: { ...bearer(key), 'content-type': 'application/x-ndjson' }, payload: body });
  it('COPYs chunks with no stored readings in their spans and merges the others, with no savepoint', async () => {
    const stored = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device: 'pr-1', ts: BASE, metrics: { a: 1, b: 2 } }] });
    assert.equal(stored.statusCode, 200, stored.body);
    const lines: Line[] = Array.from({ length: 12_000 }, (_, i) => ({ device: 'pr-2', ts: BASE + i * 1000, metrics: { x: i } }));
    lines[9000] = { device: 'pr-1', ts: BASE, metrics: { b: 20 } };
    let res!: Awaited<ReturnType<typeof importNdjson>>;
    const ran = await statementsRunBy(t.app, async () => {
      res = await importNdjson(ndjson(lines));
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.ok(ran('import.stored_in_spans:ok') >= 2, 'every chunk probed');
    assert.ok(ran('import.copy_readings:ok') >= 1, 'a chunk free of stored readings COPYed');
    assert.ok(ran('import.merge_chunk:ok') >= 1, 'the chunk with a stored reading merged');
    assert.equal(ran('import.savepoint:ok'), 0, 'no savepoint');
    const { rows } = await t.db.pool.query(
      `select m.names, r.vals from readings r join metric_sets m on m.id = r.metric_set join devices d on d.id = r.device_id where d.external_id = 'pr-1'`,
    );
    assert.deepEqual(rows, [{ names: ['a', 'b'], vals: [1, 20] }]);
    assert.equal(Number((await t.db.pool.query(`select count(*) as n from readings r join devices d on d.id = r.device_id where d.external_id = 'pr-2'`)).rows[0].n), 11_999);
  });
});

describe('large JSON and line-protocol requests take the direct path', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp({ INGEST_DIRECT_MIN_READINGS: 100 });
    key = await t.key('large');
  });
  after(() => t.close());

  const copies = async () => (await statementCounts(t.app)).get('import.copy_readings:ok') ?? 0;

  it('writes a JSON request of 100+ readings by COPY and one below through the batcher, with the same answer shape', async () => {
    const readings = Array.from({ length: 150 }, (_, i) => ({ device: `lj-${i % 3}`, ts: BASE + i * 1000, metrics: { a: i, b: 1 } }));
    const c0 = await copies();
    const big = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: readings });
    assert.equal(big.statusCode, 200, big.body);
    assert.deepEqual(big.json(), { readings: 150, values: 300, devices: 3 });
    const c1 = await copies();
    assert.equal(c1 - c0, 1);
    const small = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: readings.slice(0, 99).map((r) => ({ ...r, ts: r.ts + 500 })) });
    assert.equal(small.statusCode, 200, small.body);
    assert.deepEqual(small.json(), { readings: 99, values: 198, devices: 3 });
    assert.equal(await copies(), c1);
    const { rows } = await t.db.pool.query(`select count(*)::int as n, sum(r.vals[1])::int8 as s from readings r join devices d on d.id = r.device_id where d.external_id like 'lj-%'`);
    assert.deepEqual(rows[0], { n: 249, s: (149 * 150) / 2 + (98 * 99) / 2 });
    const latest = await t.app.inject({ url: '/v1/devices/lj-2/latest', headers: bearer(key) });
    assert.equal(latest.json().metrics.a.value, 149);
  });

  it('looks up only devices this process has not seen committed; a device deleted since is created again', async () => {
    const write = (t0: number) =>
      t.app.inject({
        method: 'POST',
        url: '/write?precision=ms',
        headers: { ...bearer(key), 'content-type': 'text/plain' },
        payload: Array.from({ length: 120 }, (_, i) => `env,device=dc-${i % 4} temp=${i} ${t0 + i}`).join('\n'),
      });
    const lookups = async () => (await statementCounts(t.app)).get('ingest.find_devices:ok') ?? 0;
    const l0 = await lookups();
    assert.equal((await write(BASE)).statusCode, 204);
    const l1 = await lookups();
    assert.ok(l1 > l0, 'new devices are looked up (and created)');
    assert.equal((await write(BASE + 1000)).statusCode, 204);
    assert.equal(await lookups(), l1, 'known devices are not looked up again');

    const { rows: before } = await t.db.pool.query(`select id from devices where external_id = 'dc-1'`);
    const del = await t.app.inject({ method: 'DELETE', url: '/v1/devices/dc-1', headers: bearer(key) });
    assert.equal(del.statusCode, 204, del.body);
    const res = await write(BASE + 2000);
    assert.equal(res.statusCode, 204, res.body);
    const { rows: after } = await t.db.pool.query(
      `select d.id, count(r.*)::int as n from devices d left join readings r on r.device_id = d.id where d.external_id = 'dc-1' group by d.id`,
    );
    assert.equal(after.length, 1);
    assert.notEqual(after[0].id, before[0].id, 'created again, with a new id');
    assert.equal(after[0].n, 30, 'only the readings written after the deletion');
    const { rows: others } = await t.db.pool.query(
      `select count(*)::int as n from readings r join devices d on d.id = r.device_id where d.external_id in ('dc-0', 'dc-2', 'dc-3')`,
    );
    assert.equal(others[0].n, 270, 'the other devices have all three writes, once');
  });

  it('writes a line-protocol request of 100+ lines by COPY; a repeated one merges', async () => {
    const lines = Array.from({ length: 120 }, (_, i) => `env,device=lp-${i % 4} temp=${i},hum=${i % 7}i ${(BASE + i * 1000) * 1000}`).join('\n');
    const c0 = await copies();
    const res = await t.app.inject({ method: 'POST', url: '/write?precision=us', headers: { ...bearer(key), 'content-type': 'text/plain' }, payload: lines });
    assert.equal(res.statusCode, 204, res.body);
    assert.equal((await copies()) - c0, 1);
    const again = await t.app.inject({ method: 'POST', url: '/write?precision=us', headers: { ...bearer(key), 'content-type': 'text/plain' }, payload: lines });
    assert.equal(again.statusCode, 204, again.body);
    const { rows } = await t.db.pool.query(`select count(*)::int as n from readings r join devices d on d.id = r.device_id where d.external_id like 'lp-%'`);
    assert.equal(rows[0].n, 120);
  });
});
