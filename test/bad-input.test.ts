import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { setTenantAutoCreate } from '../src/modules/keys/repository.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';

const TABLES = ['devices', 'metric_sets', 'readings', 'values', 'latest'] as const;
type Counts = Record<(typeof TABLES)[number], number>;

async function counts(pool: pg.Pool): Promise<Counts> {
  const { rows } = await pool.query(
    `select (select count(*) from devices)::int as devices, (select count(*) from metric_sets)::int as metric_sets,
            (select count(*) from readings)::int as readings,
            (select coalesce(sum(cardinality(vals)), 0) from readings)::int as "values",
            (select count(*) from latest_values)::int as latest`,
  );
  return rows[0] as Counts;
}

/** The response is a problem+json of `status` and `type` whose detail matches `detail`. */
function assertProblem(res: LightMyRequestResponse, status: number, type: string, detail?: RegExp) {
  assert.equal(res.statusCode, status, res.body);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
  const p = res.json();
  assert.equal(p.type, type, res.body);
  assert.equal(p.status, status);
  assert.equal(typeof p.title, 'string');
  assert.equal(typeof p.detail, 'string');
  assert.ok(p.detail.length > 0, 'detail is empty');
  if (detail) assert.match(p.detail, detail);
  return p;
}

/** Nothing that leaks internals: SQL, PostgreSQL messages, stack frames, file paths. */
function assertNoInternals(body: string) {
  for (const leak of [/select\s/i, /insert\s/i, /\bfrom\s+\w/i, /relation/i, /syntax error/i, /canceling statement/i, /\bat\s+\S+\s*\(/, /node_modules/, /\.ts:\d+/, /stack/i]) {
    assert.doesNotMatch(body, leak);
  }
}

const ok = (device = 'ok-dev', ts: unknown = '2026-11-06T10:00:00Z') => ({ device, ts, metrics: { t: 1 } });

describe('bad input', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp();
    key = await t.key('acme');
    // some data, so "nothing written" is checked against non-empty tables
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/readings',
      headers: bearer(key),
      payload: [ok('seed-1'), { device: 'seed-2', ts: '2026-11-06T09:00:00Z', metrics: { t: 2, h: 3 } }],
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(await counts(t.db.pool), { devices: 2, metric_sets: 2, readings: 2, values: 3, latest: 3 });
  });
  after(() => t.close());

  /** POSTs a raw body (to /v1/readings by default) and checks that nothing was written. */
  async function postRaw(body: string, url = '/v1/readings') {
    const before = await counts(t.db.pool);
    const res = await t.app.inject({
      method: 'POST',
      url,
      headers: { ...bearer(key), 'content-type': 'application/json' },
      payload: body,
    });
    assert.deepEqual(await counts(t.db.pool), before, `something was written by ${body.slice(0, 200)}`);
    return res;
  }
  const post = (readings: unknown, url = '/v1/readings') => postRaw(JSON.stringify(readings), url);

  describe('malformed JSON → 400 /problems/bad-request', () => {
    for (const [name, body] of [
      ['truncated', '[{"device":"x","metrics":{"t":1}'],
      ['trailing comma', '[{"device":"x","metrics":{"t":1},}]'],
      ['single quotes', "[{'device':'x','metrics':{'t':1}}]"],
      ['NaN literal', '[{"device":"x","ts":"2026-11-06T10:00:00Z","metrics":{"t":NaN}}]'],
      ['Infinity literal', '[{"device":"x","ts":"2026-11-06T10:00:00Z","metrics":{"t":Infinity}}]'],
      ['not JSON at all', 'temperature=21.5'],
    ] as const) {
      it(name, async () => {
        assertProblem(await postRaw(body), 400, '/problems/bad-request', /JSON/);
      });
    }

    it('an empty body with a JSON content type', async () => {
      const res = await postRaw('');
      assert.equal(res.statusCode, 400, res.body);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    });

    it('on POST /v1/devices and PATCH too', async () => {
      assertProblem(await postRaw('{"id":', '/v1/devices'), 400, '/problems/bad-request');
      const res = await t.app.inject({
        method: 'PATCH',
        url: '/v1/devices/seed-1',
        headers: { ...bearer(key), 'content-type': 'application/json' },
        payload: '{"name":',
      });
      assertProblem(res, 400, '/problems/bad-request');
    });
  });

  describe('wrong types → 400 /problems/validation', () => {
    const cases: [string, unknown, RegExp][] = [
      ['a body that is an object, not an array', { device: 'x', metrics: { t: 1 } }, /array/],
      ['an empty array', [], /fewer than 1|at least|NOT have fewer/i],
      ['device as a number', [{ device: 42, ts: '2026-11-06T10:00:00Z', metrics: { t: 1 } }], /device/],
      ['metrics as an array', [{ device: 'x', ts: '2026-11-06T10:00:00Z', metrics: [1, 2] }], /metrics/],
      ['ts as a boolean', [{ device: 'x', ts: true, metrics: { t: 1 } }], /ts/],
      ['metric value as a string "21.5" (bodies are not coerced)', [{ device: 'x', ts: '2026-11-06T10:00:00Z', metrics: { t: '21.5' } }], /metrics.*t|number/],
      ['metric value null', [{ device: 'x', ts: '2026-11-06T10:00:00Z', metrics: { t: null } }], /number/],
      ['metric value boolean', [{ device: 'x', ts: '2026-11-06T10:00:00Z', metrics: { t: true } }], /number/],
      ['an unknown property', [{ device: 'x', ts: '2026-11-06T10:00:00Z', metrics: { t: 1 }, colour: 'red' }], /additional|colour/],
      ['a missing device', [{ ts: '2026-11-06T10:00:00Z', metrics: { t: 1 } }], /device/],
      ['missing metrics', [{ device: 'x', ts: '2026-11-06T10:00:00Z' }], /metrics/],
    ];
    for (const [name, body, detail] of cases) {
      it(name, async () => {
        assertProblem(await post(body), 400, '/problems/validation', detail);
      });
    }

    it('device create with wrong types', async () => {
      assertProblem(await post({ id: 42 }, '/v1/devices'), 400, '/problems/validation', /id/);
      assertProblem(await post({ id: 'x', status: 'on' }, '/v1/devices'), 400, '/problems/validation', /status/);
      assertProblem(await post({ id: 'x', metadata: 'a' }, '/v1/devices'), 400, '/problems/validation', /metadata/);
      assertProblem(await post({ id: 'x', name: '' }, '/v1/devices'), 400, '/problems/validation', /name/);
    });
  });

  describe('non-finite numbers', () => {
    it('1e999 as a metric value (parses to Infinity) is rejected, nothing written', async () => {
      const res = await postRaw('[{"device":"inf-dev","ts":"2026-11-06T10:00:00Z","metrics":{"t":1e999}}]');
      assert.ok(res.statusCode === 400 || res.statusCode === 422, `${res.statusCode} ${res.body}`);
      const p = assertProblem(res, res.statusCode, res.statusCode === 400 ? '/problems/validation' : '/problems/invalid-readings');
      assert.match(JSON.stringify(p), /finite|number/);
    });

    it('-1e999 as a metric value is rejected', async () => {
      const res = await postRaw('[{"device":"inf-dev","ts":"2026-11-06T10:00:00Z","metrics":{"t":-1e999}}]');
      assert.ok(res.statusCode === 400 || res.statusCode === 422, `${res.statusCode} ${res.body}`);
    });

    it('1e999 as a timestamp is rejected with 422 and the index', async () => {
      const res = await postRaw(`[${JSON.stringify(ok())},{"device":"inf-dev","ts":1e999,"metrics":{"t":1}}]`);
      const p = assertProblem(res, 422, '/problems/invalid-readings');
      assert.deepEqual(p.errors.map((e: { index: number }) => e.index), [1]);
    });
  });

  describe('timestamps → 422 /problems/invalid-readings with errors[].index', () => {
    const cases: [string, unknown][] = [
      ['month 13, day 45', '2026-13-45T00:00:00Z'],
      ['February 30th', '2026-02-30T00:00:00Z'],
      ['words', 'yesterday'],
      ['no zone', '2026-11-06T10:00:00'],
      ['hour 24', '2026-11-06T24:00:00Z'],
      ['an empty string', ''],
      ['a negative epoch', -1000],
      ['a negative epoch string', '-1000'],
      ['before 1970 as RFC 3339', '1969-12-31T23:59:59Z'],
    ];
    for (const [name, ts] of cases) {
      it(`${name}: ${JSON.stringify(ts)}`, async () => {
        const res = await post([ok('ts-a'), ok('ts-b'), { device: 'ts-c', ts, metrics: { t: 1 } }]);
        const p = assertProblem(res, 422, '/problems/invalid-readings', /nothing was written/);
        assert.ok(Array.isArray(p.errors));
        assert.deepEqual(p.errors.map((e: { index: number }) => e.index), [2]);
        assert.match(p.errors[0].detail, /ts/);
      });
    }

    it('too far in the future (beyond MAX_FUTURE_SKEW_S)', async () => {
      const skewMs = t.config.MAX_FUTURE_SKEW_S * 1000;
      const future = new Date(Date.now() + skewMs + 3_600_000).toISOString();
      const res = await post([ok('fut-a'), { device: 'fut-b', ts: future, metrics: { t: 1 } }]);
      const p = assertProblem(res, 422, '/problems/invalid-readings');
      assert.deepEqual(p.errors.map((e: { index: number }) => e.index), [1]);
      assert.match(p.errors[0].detail, /future/);
      // as epoch milliseconds too
      const res2 = await post([{ device: 'fut-b', ts: Date.now() + skewMs + 3_600_000, metrics: { t: 1 } }]);
      assertProblem(res2, 422, '/problems/invalid-readings');
    });

    it('the year 9999 is absurd', async () => {
      assertProblem(await post([{ device: 'fut-c', ts: '9999-12-31T23:59:59Z', metrics: { t: 1 } }]), 422, '/problems/invalid-readings');
    });

    it('reports every bad index, not just the first', async () => {
      const res = await post([{ device: 'm-1', ts: 'nope', metrics: { t: 1 } }, ok('m-2'), { device: 'm-3', ts: -5, metrics: { t: 1 } }]);
      const p = assertProblem(res, 422, '/problems/invalid-readings');
      assert.deepEqual(p.errors.map((e: { index: number }) => e.index), [0, 2]);
    });
  });

  describe('device ids and metric names → 400', () => {
    const cases: [string, unknown][] = [
      ['an empty device id', [{ device: '', ts: '2026-11-06T10:00:00Z', metrics: { t: 1 } }]],
      ['a 129-character device id', [{ device: 'd'.repeat(129), ts: '2026-11-06T10:00:00Z', metrics: { t: 1 } }]],
      ['a device id with a space', [{ device: 'bad id', ts: '2026-11-06T10:00:00Z', metrics: { t: 1 } }]],
      ['a device id with a slash', [{ device: 'a/b', ts: '2026-11-06T10:00:00Z', metrics: { t: 1 } }]],
      ['a device id starting with a dash', [{ device: '-x', ts: '2026-11-06T10:00:00Z', metrics: { t: 1 } }]],
      ['a device id with non-ASCII', [{ device: 'capteur-é', ts: '2026-11-06T10:00:00Z', metrics: { t: 1 } }]],
      ['an empty metric name', [{ device: 'x', ts: '2026-11-06T10:00:00Z', metrics: { '': 1 } }]],
      ['a 129-character metric name', [{ device: 'x', ts: '2026-11-06T10:00:00Z', metrics: { ['m'.repeat(129)]: 1 } }]],
      ['a metric name with a space', [{ device: 'x', ts: '2026-11-06T10:00:00Z', metrics: { 'temp c': 1 } }]],
      ['an empty metrics object', [{ device: 'x', ts: '2026-11-06T10:00:00Z', metrics: {} }]],
    ];
    for (const [name, body] of cases) {
      it(name, async () => {
        assertProblem(await post(body), 400, '/problems/validation', /device|metric|propert/);
      });
    }

    it('128 characters is the longest id and name accepted, on write and in the URL', async () => {
      const id = 'd'.repeat(128);
      const name = 'm'.repeat(128);
      try {
        const res = await t.app.inject({
          method: 'POST',
          url: '/v1/readings',
          headers: bearer(key),
          payload: [{ device: id, ts: '2026-11-06T10:00:00Z', metrics: { [name]: 1 } }],
        });
        assert.equal(res.statusCode, 200, res.body);
        // a device that can be written must be addressable by its id
        const got = await t.app.inject({ url: `/v1/devices/${id}`, headers: bearer(key) });
        assert.equal(got.statusCode, 200, `GET /v1/devices/<128 chars>: ${got.statusCode} ${got.body}`);
        const latest = await t.app.inject({ url: `/v1/devices/${id}/latest`, headers: bearer(key) });
        assert.equal(latest.statusCode, 200, latest.body);
        assert.equal(latest.json().metrics[name].value, 1);
      } finally {
        await t.db.pool.query(`delete from readings where device_id in (select d.id from devices d where d.external_id = $1)`, [id]);
        await t.db.pool.query('delete from devices where external_id = $1', [id]);
      }
    });

    it('bad device ids in POST /v1/devices', async () => {
      assertProblem(await post({ id: '' }, '/v1/devices'), 400, '/problems/validation', /id/);
      assertProblem(await post({ id: 'd'.repeat(129) }, '/v1/devices'), 400, '/problems/validation', /id/);
      assertProblem(await post({ id: 'a b' }, '/v1/devices'), 400, '/problems/validation', /id/);
    });

    it('bad device ids in the URL', async () => {
      const res = await t.app.inject({ url: '/v1/devices/bad%20id/latest', headers: bearer(key) });
      assertProblem(res, 400, '/problems/validation', /device/);
      const res2 = await t.app.inject({ url: '/v1/devices/-x', headers: bearer(key) });
      assertProblem(res2, 400, '/problems/validation', /device/);
    });

    it('an over-long device id in the URL is a 4xx problem+json', async () => {
      const res = await t.app.inject({ url: `/v1/devices/${'d'.repeat(129)}`, headers: bearer(key) });
      assert.ok(res.statusCode === 400 || res.statusCode === 414, `${res.statusCode} ${res.body}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/, res.body);
    });
  });

  describe('all or nothing', () => {
    it('one reading with a bad value in a batch of valid ones: the whole batch is rejected', async () => {
      const batch = Array.from({ length: 50 }, (_, i) => ({ device: `batch-${i % 7}`, ts: `2026-11-06T10:${String(i).padStart(2, '0')}:00Z`, metrics: { t: i } }));
      batch[37] = { device: 'batch-3', ts: '2026-11-06T11:00:00Z', metrics: { t: 'hot' as unknown as number } };
      assertProblem(await post(batch), 400, '/problems/validation', /37/);
    });

    it('one reading with a bad timestamp in a batch of valid ones: 422 naming it, nothing written', async () => {
      const batch = Array.from({ length: 50 }, (_, i) => ({ device: `batch-${i % 7}`, ts: `2026-11-06T10:${String(i).padStart(2, '0')}:00Z`, metrics: { t: i } }));
      batch[41] = { device: 'batch-6', ts: '2026-11-31T00:00:00Z', metrics: { t: 1 } };
      const p = assertProblem(await post(batch), 422, '/problems/invalid-readings');
      assert.deepEqual(p.errors.map((e: { index: number }) => e.index), [41]);
    });

    it('the same batch without the bad reading is written in full', async () => {
      const batch = Array.from({ length: 50 }, (_, i) => ({ device: `batch-${i % 7}`, ts: `2026-11-06T10:${String(i).padStart(2, '0')}:00Z`, metrics: { t: i } }));
      const base = await counts(t.db.pool);
      const res = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: batch });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json(), { readings: 50, values: 50, devices: 7 });
      const now = await counts(t.db.pool);
      assert.equal(now.readings - base.readings, 50);
      assert.equal(now.values - base.values, 50);
      assert.equal(now.devices - base.devices, 7);
      for (let i = 0; i < 7; i++) {
        assert.equal((await t.app.inject({ method: 'DELETE', url: `/v1/devices/batch-${i}`, headers: bearer(key) })).statusCode, 204);
      }
      assert.deepEqual(await counts(t.db.pool), base);
    });
  });

  describe('query parameters → 400', () => {
    const get = (url: string) => t.app.inject({ url, headers: bearer(key) });

    it('out-of-range limit on /v1/devices', async () => {
      for (const limit of ['0', '1001', '-1', 'ten', '1.5']) {
        assertProblem(await get(`/v1/devices?limit=${limit}`), 400, '/problems/validation', /limit/);
      }
      assert.equal((await get('/v1/devices?limit=1000')).statusCode, 200);
      assert.equal((await get('/v1/devices?limit=1')).statusCode, 200);
    });

    it('out-of-range limit on the range and dashboard endpoints', async () => {
      assertProblem(await get('/v1/devices/seed-1/readings?limit=0'), 400, '/problems/validation', /limit/);
      assertProblem(await get('/v1/devices/seed-1/readings?limit=10001'), 400, '/problems/validation', /limit/);
      assertProblem(await get('/v1/readings/latest?limit=0'), 400, '/problems/validation', /limit/);
      assertProblem(await get('/v1/readings/latest?limit=1001'), 400, '/problems/validation', /limit/);
    });

    it('an unparseable cursor → 400 /problems/invalid-cursor', async () => {
      const wrongShape = Buffer.from(JSON.stringify({ after: 'x' })).toString('base64url');
      const wrongTypes = Buffer.from(JSON.stringify([1, 'x'])).toString('base64url');
      for (const cursor of ['garbage', '!!!', 'eyJ', wrongShape, wrongTypes]) {
        assertProblem(await get(`/v1/devices?cursor=${cursor}`), 400, '/problems/invalid-cursor', /cursor/);
        assertProblem(await get(`/v1/devices/seed-1/readings?cursor=${cursor}`), 400, '/problems/invalid-cursor', /cursor/);
      }
      // a devices cursor is not a readings cursor
      const page = (await get('/v1/devices?limit=1')).json();
      assert.ok(page.next_cursor);
      assertProblem(await get(`/v1/devices/seed-1/readings?cursor=${page.next_cursor}`), 400, '/problems/invalid-cursor');
    });

    it('an over-long cursor → 400', async () => {
      const res = await get(`/v1/devices?cursor=${'a'.repeat(600)}`);
      assert.equal(res.statusCode, 400);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    });

    it('an unknown query parameter → 400', async () => {
      assertProblem(await get('/v1/devices?colour=red'), 400, '/problems/validation', /colour|additional/);
      assertProblem(await get('/v1/devices/seed-1/readings?metrics=t'), 400, '/problems/validation');
      assertProblem(await get('/v1/devices/seed-1/stats?metric=t&bukket=1h'), 400, '/problems/validation');
      assertProblem(await get('/v1/readings/latest?satus=active'), 400, '/problems/validation');
    });

    it('bad values of other query parameters', async () => {
      assertProblem(await get('/v1/devices?status=broken'), 400, '/problems/validation', /status/);
      assertProblem(await get('/v1/devices/seed-1/readings?from=yesterday'), 400, '/problems/validation', /from/);
      assertProblem(await get('/v1/devices/seed-1/readings?from=2026-11-06T00:00:00Z&to=2026-11-05T00:00:00Z'), 400, '/problems/validation', /from/);
      assertProblem(await get('/v1/devices/seed-1/stats'), 400, '/problems/validation', /metric/);
      assertProblem(await get('/v1/devices/seed-1/stats?metric=t&bucket=5m'), 400, '/problems/validation', /bucket/);
      assertProblem(await get('/v1/readings/latest?since=forever'), 400, '/problems/validation', /since/);
      assertProblem(await get('/v1/readings/latest?since=400d'), 400, '/problems/validation', /since/);
    });
  });

  describe('unknown devices when auto-creation is off', () => {
    it('422 /problems/unknown-device, nothing written, even for the known devices in the batch', async () => {
      const k = await t.key('strict-tenant');
      const w = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(k), payload: [ok('known-1')] });
      assert.equal(w.statusCode, 200, w.body);
      const base = await counts(t.db.pool);
      assert.ok(await setTenantAutoCreate(t.database.api, 'strict-tenant', false));
      try {
        const res = await t.app.inject({
          method: 'POST',
          url: '/v1/readings',
          headers: bearer(k),
          payload: [
            { device: 'known-1', ts: '2026-11-06T11:00:00Z', metrics: { t: 5, new_metric: 1 } },
            ok('stranger-1'),
          ],
        });
        const p = assertProblem(res, 422, '/problems/unknown-device', /stranger-1/);
        assert.deepEqual(p.devices, ['stranger-1']);
        assert.deepEqual(await counts(t.db.pool), base);
        // a registered device can still be written to
        assert.equal((await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(k), payload: { id: 'stranger-1' } })).statusCode, 201);
        const again = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(k), payload: [ok('stranger-1')] });
        assert.equal(again.statusCode, 200, again.body);
      } finally {
        await setTenantAutoCreate(t.database.api, 'strict-tenant', true);
      }
    });
  });

  describe('other routes', () => {
    it('an unknown route is 404 problem+json', async () => {
      for (const url of ['/nope', '/v1/nope', '/v2/devices']) {
        const res = await t.app.inject({ url, headers: bearer(key) });
        assertProblem(res, 404, '/problems/not-found', /No route/);
      }
      const res = await t.app.inject({ method: 'PUT', url: '/v1/devices/seed-1', headers: bearer(key), payload: {} });
      assert.equal(res.statusCode, 404);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    });

    it('a malformed percent-encoding in the path is 400 problem+json', async () => {
      const res = await t.app.inject({ url: '/v1/devices/%E0%A4%A/latest', headers: bearer(key) });
      assert.equal(res.statusCode, 400, res.body);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/, res.body);
    });

    it('a non-JSON content type is 415 problem+json', async () => {
      const base = await counts(t.db.pool);
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/readings',
        headers: { ...bearer(key), 'content-type': 'application/xml' },
        payload: '<readings/>',
      });
      assertProblem(res, 415, '/problems/unsupported-media-type');
      assert.deepEqual(await counts(t.db.pool), base);
    });
  });
});

describe('size limits → 413', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp({ MAX_READINGS_PER_REQUEST: 5, BODY_LIMIT_BYTES: 2048 });
    key = await t.key('acme');
  });
  after(() => t.close());

  const post = (payload: string) =>
    t.app.inject({ method: 'POST', url: '/v1/readings', headers: { ...bearer(key), 'content-type': 'application/json' }, payload });
  const batch = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ok(`s-${i}`)));

  it('MAX_READINGS_PER_REQUEST readings are accepted; one more is 413, nothing written', async () => {
    const res = await post(batch(5));
    assert.equal(res.statusCode, 200, res.body);
    const base = await counts(t.db.pool);
    const over = await post(JSON.stringify(Array.from({ length: 6 }, (_, i) => ok(`big-${i}`))));
    assertProblem(over, 413, '/problems/payload-too-large', /5/);
    assert.deepEqual(await counts(t.db.pool), base);
  });

  it('a body over BODY_LIMIT_BYTES is 413, nothing written', async () => {
    const base = await counts(t.db.pool);
    const body = JSON.stringify([{ device: 'huge', ts: '2026-11-06T10:00:00Z', metrics: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`metric_${i}`, i])) }]);
    assert.ok(Buffer.byteLength(body) > 2048);
    assertProblem(await post(body), 413, '/problems/payload-too-large');
    assert.deepEqual(await counts(t.db.pool), base);
  });

  it('a large body to POST /v1/devices is 413 too', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/devices',
      headers: bearer(key),
      payload: { id: 'meta-huge', metadata: { blob: 'x'.repeat(4096) } },
    });
    assertProblem(res, 413, '/problems/payload-too-large');
  });
});

describe('server errors never leak internals', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    // a short statement timeout, so a query stuck behind a lock is cancelled quickly
    t = await createTestApp({ DB_STATEMENT_TIMEOUT_MS: 300 });
    key = await t.key('acme');
    const res = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [ok('e-1')] });
    assert.equal(res.statusCode, 200, res.body);
  });
  after(() => t.close());

  it('a statement timeout is 503 problem+json with Retry-After and no SQL', async () => {
    // deterministic: the devices table is locked, so the list query waits until the
    // statement timeout cancels it (authentication reads only api_keys and tenants)
    const locker = await t.db.pool.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table devices in access exclusive mode');
      const res = await t.app.inject({ url: '/v1/devices', headers: bearer(key) });
      assertProblem(res, 503, '/problems/unavailable');
      assert.ok(res.headers['retry-after']);
      assertNoInternals(res.body);
    } finally {
      await locker.query('rollback');
      locker.release();
    }
    assert.equal((await t.app.inject({ url: '/v1/devices', headers: bearer(key) })).statusCode, 200);
  });

  it('an unexpected database error is 500 problem+json with a generic detail', async () => {
    // a missing table makes the latest query fail with an error no catalogue entry maps
    await t.db.pool.query('alter table latest rename to latest_gone');
    try {
      const res = await t.app.inject({ url: '/v1/devices/e-1/latest', headers: bearer(key) });
      const p = assertProblem(res, 500, '/problems/internal');
      assert.equal(p.detail, 'An unexpected error occurred.');
      assertNoInternals(res.body);
      assert.doesNotMatch(res.body, /latest_gone|does not exist|42P01/);
    } finally {
      await t.db.pool.query('alter table latest_gone rename to latest');
    }
    assert.equal((await t.app.inject({ url: '/v1/devices/e-1/latest', headers: bearer(key) })).statusCode, 200);
  });
});
