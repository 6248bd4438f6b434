import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';

const count = async (t: TestApp, sql: string, params: unknown[] = []) => Number((await t.db.pool.query(sql, params)).rows[0].n);
const valuesOf = (t: TestApp, device: string) =>
  count(
    t,
    `select coalesce(sum(cardinality(r.vals)), 0) as n from readings r join devices d on d.id = r.device_id where d.external_id = $1`,
    [device],
  );

describe('group commit', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp({ INGEST_BATCH_MAX_WAIT_MS: 5 });
    key = await t.key('gc');
  });
  after(() => t.close());

  const post = (body: unknown) => t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: body as object });

  it('commits every acknowledged request exactly once when many arrive together', async () => {
    const base = Date.UTC(2026, 10, 10);
    const res = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        post([{ device: `gc-${i % 7}`, ts: base + i * 1000, metrics: { a: i, b: -i } }]),
      ),
    );
    assert.ok(res.every((r) => r.statusCode === 200));
    for (let d = 0; d < 7; d++) {
      const expected = Array.from({ length: 200 }, (_, i) => i).filter((i) => i % 7 === d).length;
      assert.equal(await count(t, `select count(*) as n from readings r join devices d on d.id = r.device_id where d.external_id = $1`, [`gc-${d}`]), expected);
      assert.equal(await valuesOf(t, `gc-${d}`), expected * 2);
    }
    const flushes = (await t.app.inject({ url: '/metrics' })).body.match(/^pulse_ingest_batch_values_count (\d+)/m);
    assert.ok(flushes && Number(flushes[1]) < 200, `requests were batched: ${flushes?.[1]} flushes for 200 requests`);
  });

  it('a bad request in the same window fails alone', async () => {
    const base = Date.UTC(2026, 10, 11);
    const [good1, bad, good2] = await Promise.all([
      post([{ device: 'win-1', ts: base, metrics: { a: 1 } }]),
      post([{ device: 'win-2', ts: 'not a time', metrics: { a: 1 } }]),
      post([{ device: 'win-3', ts: base, metrics: { a: 1 } }]),
    ]);
    assert.equal(good1.statusCode, 200);
    assert.equal(bad.statusCode, 422);
    assert.equal(good2.statusCode, 200);
    assert.equal(await valuesOf(t, 'win-1'), 1);
    assert.equal(await valuesOf(t, 'win-3'), 1);
    assert.equal(await count(t, `select count(*) as n from devices where external_id = 'win-2'`), 0);
  });

  it('an unknown device of a tenant without auto-creation fails alone, even in the same flush', async () => {
    const strictKey = await t.key('gc-strict');
    await t.db.pool.query(`update tenants set auto_create_devices = false where name = 'gc-strict'`);
    const strict = (body: unknown) =>
      t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(strictKey), payload: body as object });
    const base = Date.UTC(2026, 10, 12);
    const [ok, unknown] = await Promise.all([
      post([{ device: 'mixed-ok', ts: base, metrics: { a: 1 } }]),
      strict([{ device: 'mixed-unknown', ts: base, metrics: { a: 1 } }]),
    ]);
    assert.equal(ok.statusCode, 200);
    assert.equal(unknown.statusCode, 422);
    assert.equal(unknown.json().type, '/problems/unknown-device');
    assert.equal(await valuesOf(t, 'mixed-ok'), 1);
    assert.equal(await count(t, `select count(*) as n from devices where external_id = 'mixed-unknown'`), 0);
  });

  it('a device deleted after its id was cached is re-created by the next write', async () => {
    const ts = Date.UTC(2026, 10, 15);
    assert.equal((await post([{ device: 'cached-1', ts, metrics: { a: 1 } }])).statusCode, 200);
    assert.equal((await post([{ device: 'cached-1', ts: ts + 1, metrics: { a: 2 } }])).statusCode, 200);
    assert.equal((await t.app.inject({ method: 'DELETE', url: '/v1/devices/cached-1', headers: bearer(key) })).statusCode, 204);
    const res = await post([{ device: 'cached-1', ts: ts + 2, metrics: { a: 3 } }]);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(await valuesOf(t, 'cached-1'), 1);
    const latest = (await t.app.inject({ url: '/v1/devices/cached-1/latest', headers: bearer(key) })).json();
    assert.equal(latest.metrics.a.value, 3);
  });

  it('a failed flush answers 503 with Retry-After and writes nothing of it', async () => {
    await post([{ device: 'fail-1', ts: Date.UTC(2026, 10, 13), metrics: { a: 1 } }]);
    // a real failure inside the flush transaction, after readings were inserted
    await t.db.pool.query('alter table latest rename to latest_away');
    try {
      const res = await post([{ device: 'fail-1', ts: Date.UTC(2026, 10, 13, 1), metrics: { a: 2, b: 3 } }]);
      assert.equal(res.statusCode, 503);
      assert.equal(res.headers['retry-after'], '1');
      assert.equal(res.json().type, '/problems/unavailable');
    } finally {
      await t.db.pool.query('alter table latest_away rename to latest');
    }
    assert.equal(await valuesOf(t, 'fail-1'), 1);
    const ok = await post([{ device: 'fail-1', ts: Date.UTC(2026, 10, 13, 1), metrics: { a: 2 } }]);
    assert.equal(ok.statusCode, 200, 'the batcher recovers after a failed flush');
  });
});

describe('backpressure', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp({ INGEST_BUFFER_MAX_VALUES: 10, INGEST_FLUSH_CONCURRENCY: 1 });
    key = await t.key('bp');
  });
  after(() => t.close());

  it('refuses writes with 503 + Retry-After at once when the buffer is full, and loses nothing acknowledged', async () => {
    // hold the flushes: a lock on latest makes the flush transaction wait
    const blocker = new pg.Client({ connectionString: t.db.url });
    await blocker.connect();
    await blocker.query('begin');
    await blocker.query('lock table latest in access exclusive mode');
    const base = Date.UTC(2026, 10, 14);
    const settled: { statusCode: number; headers: Record<string, unknown> }[] = [];
    const pending = Array.from({ length: 20 }, (_, i) =>
      t.app
        .inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device: 'bp-1', ts: base + i, metrics: { a: i, b: i } }] })
        .then((r) => (settled.push(r), r)),
    );
    // at most 5 requests (10 values) fit; the other 15 are answered while the database is
    // still blocked: they did not wait for it
    const deadline = Date.now() + 30_000;
    while (settled.length < 15 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(settled.length, 15, 'requests beyond the buffer were answered while the database was blocked');
    for (const r of settled) {
      assert.equal(r.statusCode, 503);
      assert.equal(r.headers['retry-after'], '1');
    }
    await blocker.query('rollback');
    await blocker.end();
    const all = await Promise.all(pending);
    const accepted = all.filter((r) => r.statusCode === 200).length;
    assert.equal(accepted, 5);
    assert.equal(all.filter((r) => r.statusCode === 503).length, 15);
    assert.equal(await valuesOf(t, 'bp-1'), accepted * 2);
    const rejected = (await t.app.inject({ url: '/metrics' })).body.match(/^pulse_ingest_rejected_total\{reason="buffer_full"\} (\d+)/m);
    assert.ok(rejected && Number(rejected[1]) >= 14, String(rejected));
  });
});
