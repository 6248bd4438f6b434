import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

describe('devices', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp();
    key = await t.key('acme');
  });
  after(() => t.close());

  const req = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown, k = key) =>
    t.app.inject({ method, url, headers: bearer(k), ...(body === undefined ? {} : { payload: body as object }) });
  const writeReadings = async (readings: unknown[], k = key) => {
    const res = await req('POST', '/v1/readings', readings, k);
    assert.equal(res.statusCode, 200, res.body);
  };
  /** Walks every page of GET /v1/devices?<query>; `between` runs after each page. */
  async function walk(query: string, k = key, between?: (page: number) => Promise<void>) {
    const ids: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; ; page++) {
      assert.ok(page < 10_000, 'pagination does not end');
      const url: string = `/v1/devices?${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await req('GET', url, undefined, k);
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json() as { items: { id: string }[]; next_cursor: string | null };
      ids.push(...body.items.map((d) => d.id));
      cursor = body.next_cursor;
      if (cursor === null) return ids;
      if (between) await between(page);
    }
  }
  /** The tenant's device ids in the database's own order (the order the API promises). */
  async function idsInDb(tenant: string, status?: string) {
    const { rows } = await t.db.pool.query<{ external_id: string }>(
      `select d.external_id from devices d join tenants t on t.id = d.tenant_id
        where t.name = $1 and ($2::text is null or d.status = $2::text) order by d.external_id`,
      [tenant, status ?? null],
    );
    return rows.map((r) => r.external_id);
  }

  describe('create and get', () => {
    it('creates a device: 201 with the full device', async () => {
      const res = await req('POST', '/v1/devices', {
        id: 'thermo-1',
        name: 'Kitchen thermometer',
        metadata: { floor: 2, tags: ['kitchen'] },
      });
      assert.equal(res.statusCode, 201, res.body);
      assert.match(String(res.headers['content-type']), /^application\/json/);
      const d = res.json();
      assert.deepEqual(Object.keys(d).sort(), ['created_at', 'id', 'metadata', 'name', 'status', 'updated_at']);
      assert.equal(d.id, 'thermo-1');
      assert.equal(d.name, 'Kitchen thermometer');
      assert.equal(d.status, 'active', 'status defaults to active');
      assert.deepEqual(d.metadata, { floor: 2, tags: ['kitchen'] });
      assert.match(d.created_at, ISO);
      assert.match(d.updated_at, ISO);
    });

    it('defaults name to null and metadata to {}; takes an explicit status', async () => {
      const res = await req('POST', '/v1/devices', { id: 'bare-1', status: 'inactive' });
      assert.equal(res.statusCode, 201, res.body);
      const d = res.json();
      assert.equal(d.name, null);
      assert.deepEqual(d.metadata, {});
      assert.equal(d.status, 'inactive');
    });

    it('refuses a duplicate id with 409 problem+json and leaves the first device unchanged', async () => {
      await req('POST', '/v1/devices', { id: 'dup-1', name: 'first' });
      const res = await req('POST', '/v1/devices', { id: 'dup-1', name: 'second' });
      assert.equal(res.statusCode, 409);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      const p = res.json();
      assert.equal(p.type, '/problems/conflict');
      assert.equal(p.status, 409);
      assert.match(p.detail, /dup-1/);
      const got = await req('GET', '/v1/devices/dup-1');
      assert.equal(got.json().name, 'first');
    });

    it('concurrent creates of one id: exactly one 201, the rest 409', async () => {
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => req('POST', '/v1/devices', { id: 'race-1', name: `n${i}` })));
      assert.deepEqual(results.map((r) => r.statusCode).sort(), [201, 409, 409, 409, 409, 409]);
      const { rows } = await t.db.pool.query(`select count(*)::int as n from devices where external_id = 'race-1'`);
      assert.equal(rows[0].n, 1);
    });

    it('gets a device by its external id', async () => {
      const created = (await req('POST', '/v1/devices', { id: 'get-me:1', name: 'n', metadata: { a: 1 } })).json();
      const res = await req('GET', '/v1/devices/get-me:1');
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), created);
    });

    it('404 problem+json for a device that does not exist', async () => {
      const res = await req('GET', '/v1/devices/nope-404');
      assert.equal(res.statusCode, 404);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assert.equal(res.json().type, '/problems/not-found');
    });
  });

  describe('patch', () => {
    before(async () => {
      await req('POST', '/v1/devices', { id: 'patch-1', name: 'before', metadata: { v: 1 } });
    });

    it('changes only the fields sent and moves updated_at', async () => {
      const before = (await req('GET', '/v1/devices/patch-1')).json();
      const res = await req('PATCH', '/v1/devices/patch-1', { name: 'after' });
      assert.equal(res.statusCode, 200, res.body);
      const d = res.json();
      assert.equal(d.name, 'after');
      assert.equal(d.status, 'active');
      assert.deepEqual(d.metadata, { v: 1 });
      assert.equal(d.created_at, before.created_at);
      assert.ok(d.updated_at >= before.updated_at);
      assert.deepEqual((await req('GET', '/v1/devices/patch-1')).json(), d);
    });

    it('sets status and replaces metadata', async () => {
      const res = await req('PATCH', '/v1/devices/patch-1', { status: 'inactive', metadata: { v: 2, loc: 'roof' } });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().status, 'inactive');
      assert.deepEqual(res.json().metadata, { v: 2, loc: 'roof' });
      assert.equal(res.json().name, 'after');
    });

    it('null name clears the name', async () => {
      const res = await req('PATCH', '/v1/devices/patch-1', { name: null });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().name, null);
      assert.equal((await req('GET', '/v1/devices/patch-1')).json().name, null);
    });

    it('an empty patch is 400 problem+json and changes nothing', async () => {
      const before = (await req('GET', '/v1/devices/patch-1')).json();
      const res = await req('PATCH', '/v1/devices/patch-1', {});
      assert.equal(res.statusCode, 400);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assert.equal(res.json().type, '/problems/validation');
      assert.deepEqual((await req('GET', '/v1/devices/patch-1')).json(), before);
    });

    it('a bad status or unknown field is 400', async () => {
      assert.equal((await req('PATCH', '/v1/devices/patch-1', { status: 'broken' })).statusCode, 400);
      assert.equal((await req('PATCH', '/v1/devices/patch-1', { colour: 'red' })).statusCode, 400);
    });

    it('404 for a device that does not exist', async () => {
      const res = await req('PATCH', '/v1/devices/nope-patch', { name: 'x' });
      assert.equal(res.statusCode, 404);
      assert.equal(res.json().type, '/problems/not-found');
    });
  });

  describe('delete', () => {
    it('204, then 404; its readings and latest rows are gone, other devices untouched', async () => {
      await writeReadings([
        { device: 'del-1', ts: '2026-11-02T10:00:00Z', metrics: { t: 1, h: 2 } },
        { device: 'del-1', ts: '2026-11-02T10:01:00Z', metrics: { t: 3 } },
        { device: 'keep-1', ts: '2026-11-02T10:00:00Z', metrics: { t: 9 } },
      ]);
      const { rows: devices } = await t.db.pool.query<{ id: string; external_id: string }>(
        `select id, external_id from devices where external_id in ('del-1', 'keep-1')`,
      );
      assert.equal(devices.length, 2);
      const deviceId = devices.find((d) => d.external_id === 'del-1')!.id;
      const keepId = devices.find((d) => d.external_id === 'keep-1')!.id;
      const count = async (sql: string, params: unknown[]) => Number((await t.db.pool.query(sql, params)).rows[0].n);
      // 2 readings (one per ts) holding 3 values; one latest row per metric
      assert.equal(await count('select count(*) as n from readings where device_id = $1::bigint', [deviceId]), 2);
      assert.equal(
        await count('select coalesce(sum(cardinality(vals)), 0) as n from readings where device_id = $1::bigint', [deviceId]),
        3,
      );
      assert.equal(await count('select count(*) as n from latest_values where device_id = $1::bigint', [deviceId]), 2);
      const metricSets = await count('select count(*) as n from metric_sets', []);

      const res = await req('DELETE', '/v1/devices/del-1');
      assert.equal(res.statusCode, 204);
      assert.equal(res.body, '');
      assert.equal((await req('GET', '/v1/devices/del-1')).statusCode, 404);
      assert.equal((await req('GET', '/v1/devices/del-1/latest')).statusCode, 404);
      assert.equal((await req('DELETE', '/v1/devices/del-1')).statusCode, 404);

      assert.equal(await count('select count(*) as n from devices where id = $1::bigint', [deviceId]), 0);
      assert.equal(await count('select count(*) as n from readings where device_id = $1::bigint', [deviceId]), 0);
      assert.equal(await count('select count(*) as n from latest_values where device_id = $1::bigint', [deviceId]), 0);
      // metric sets are a shared dictionary: never deleted with a device
      assert.equal(await count('select count(*) as n from metric_sets', []), metricSets);
      assert.equal(await count('select count(*) as n from readings where device_id = $1::bigint', [keepId]), 1);
      assert.equal(await count('select count(*) as n from latest_values where device_id = $1::bigint', [keepId]), 1);

      const kept = await req('GET', '/v1/devices/keep-1/latest');
      assert.equal(kept.statusCode, 200);
      assert.equal(kept.json().metrics.t.value, 9);
    });

    it('a device written to again after deletion starts empty', async () => {
      await writeReadings([{ device: 'del-2', ts: '2026-11-02T10:00:00Z', metrics: { old: 1 } }]);
      assert.equal((await req('DELETE', '/v1/devices/del-2')).statusCode, 204);
      await writeReadings([{ device: 'del-2', ts: '2026-11-02T11:00:00Z', metrics: { new: 2 } }]);
      const latest = (await req('GET', '/v1/devices/del-2/latest')).json();
      assert.deepEqual(Object.keys(latest.metrics), ['new']);
    });
  });

  describe('list', () => {
    const tenant = 'lister';
    let k: string;
    before(async () => {
      k = await t.key(tenant);
      for (let i = 0; i < 12; i++) {
        const res = await req('POST', '/v1/devices', { id: `dev-${String(i).padStart(3, '0')}`, status: i % 3 === 0 ? 'inactive' : 'active' }, k);
        assert.equal(res.statusCode, 201, res.body);
      }
    });

    it('lists all devices in id order with next_cursor null when they fit', async () => {
      const res = await req('GET', '/v1/devices', undefined, k);
      assert.equal(res.statusCode, 200);
      const body = res.json();
      assert.deepEqual(Object.keys(body).sort(), ['items', 'next_cursor']);
      assert.equal(body.next_cursor, null);
      assert.deepEqual(
        body.items.map((d: { id: string }) => d.id),
        Array.from({ length: 12 }, (_, i) => `dev-${String(i).padStart(3, '0')}`),
      );
      assert.deepEqual(Object.keys(body.items[0]).sort(), ['created_at', 'id', 'metadata', 'name', 'status', 'updated_at']);
    });

    it('filters by status', async () => {
      const inactive = (await req('GET', '/v1/devices?status=inactive', undefined, k)).json().items;
      assert.deepEqual(inactive.map((d: { id: string }) => d.id), ['dev-000', 'dev-003', 'dev-006', 'dev-009']);
      assert.ok(inactive.every((d: { status: string }) => d.status === 'inactive'));
      const active = (await req('GET', '/v1/devices?status=active', undefined, k)).json().items;
      assert.equal(active.length, 8);
      assert.ok(active.every((d: { status: string }) => d.status === 'active'));
    });

    it('walks keyset pages: every device exactly once, in order, with an opaque cursor', async () => {
      for (const limit of [1, 2, 5, 12, 13]) {
        const ids = await walk(`limit=${limit}`, k);
        assert.deepEqual(ids, await idsInDb(tenant), `limit=${limit}`);
      }
      const first = (await req('GET', '/v1/devices?limit=5', undefined, k)).json();
      assert.equal(first.items.length, 5);
      assert.equal(typeof first.next_cursor, 'string');
      assert.ok(!first.next_cursor.includes('dev-004'), 'the cursor is opaque, not the raw id');
    });

    it('pages with a status filter', async () => {
      assert.deepEqual(await walk('status=active&limit=3', k), await idsInDb(tenant, 'active'));
      assert.deepEqual(await walk('status=inactive&limit=1', k), await idsInDb(tenant, 'inactive'));
    });

    it('a last page exactly full ends with an empty page', async () => {
      const first = (await req('GET', '/v1/devices?limit=12', undefined, k)).json();
      assert.equal(first.items.length, 12);
      if (first.next_cursor !== null) {
        const next = (await req('GET', `/v1/devices?limit=12&cursor=${first.next_cursor}`, undefined, k)).json();
        assert.deepEqual(next, { items: [], next_cursor: null });
      }
    });
  });

  describe('pagination while devices are being inserted', () => {
    it('devices inserted between page fetches: no duplicates, no gaps among the devices that existed at the start', async () => {
      const tenant = 'moving';
      const k = await t.key(tenant);
      // even numbers exist at the start; odd ones (which sort between them) and ones
      // sorting before and after everything arrive while the client pages
      const start = Array.from({ length: 40 }, (_, i) => `m-${String(i * 2).padStart(4, '0')}`);
      await writeReadings(start.map((device) => ({ device, ts: '2026-11-03T00:00:00Z', metrics: { x: 1 } })), k);
      let added = 0;
      const seen = await walk('limit=7', k, async (page) => {
        const fresh = [`m-${String(page * 14 + 1).padStart(4, '0')}`, `m-${String(page * 14 + 3).padStart(4, '0')}`, `a-${page}`, `z-${page}`];
        await writeReadings(fresh.map((device) => ({ device, ts: '2026-11-03T00:00:00Z', metrics: { x: 1 } })), k);
        added += fresh.length;
      });
      assert.ok(added > 0);
      assert.equal(new Set(seen).size, seen.length, `duplicates in ${seen.join(',')}`);
      for (const id of start) assert.ok(seen.includes(id), `${id} was skipped`);
      // the walk is in the database's order (keyset pages never go backwards)
      const all = await idsInDb(tenant);
      const positions = seen.map((id) => all.indexOf(id));
      assert.ok(positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1]!)), 'pages out of order');
    });

    it('devices inserted concurrently with the walk: no duplicates, no gaps', async () => {
      const tenant = 'racing';
      const k = await t.key(tenant);
      const start = Array.from({ length: 60 }, (_, i) => `r-${String(i * 3).padStart(4, '0')}`);
      await writeReadings(start.map((device) => ({ device, ts: '2026-11-03T00:00:00Z', metrics: { x: 1 } })), k);
      let stop = false;
      const writer = (async () => {
        for (let i = 0; !stop && i < 500; i++) {
          await writeReadings([
            { device: `r-${String(i * 3 + 1).padStart(4, '0')}`, ts: '2026-11-03T00:00:00Z', metrics: { x: 1 } },
            { device: `r-${String(i * 3 + 2).padStart(4, '0')}`, ts: '2026-11-03T00:00:00Z', metrics: { x: 1 } },
          ], k);
          await new Promise((r) => setImmediate(r));
        }
      })();
      let seen: string[];
      try {
        seen = await walk('limit=4', k, () => new Promise((r) => setImmediate(r)));
      } finally {
        stop = true;
        await writer;
      }
      assert.equal(new Set(seen).size, seen.length, 'duplicates');
      for (const id of start) assert.ok(seen.includes(id), `${id} was skipped`);
      const sorted = [...seen].sort((a, b) => (a < b ? -1 : 1)); // ids use only [r0-9-]: byte order = any collation
      assert.deepEqual(seen, sorted);
    });
  });

  describe('property: keyset pages cover every device exactly once', () => {
    it('for any set of device ids and any page size', async () => {
      const idChar = fc.constantFrom(...'aAzZ09._:@-'.split(''));
      const deviceId = fc
        .tuple(fc.constantFrom('a', 'B', '7', 'z'), fc.array(idChar, { maxLength: 12 }))
        .map(([h, rest]) => h + rest.join(''));
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(deviceId, { minLength: 0, maxLength: 40 }),
          fc.integer({ min: 1, max: 15 }),
          async (ids, limit) => {
            const tenant = `prop-${run++}`;
            const k = await t.key(tenant);
            if (ids.length) {
              await writeReadings(ids.map((device) => ({ device, ts: '2026-11-04T00:00:00Z', metrics: { x: 1 } })), k);
            }
            const seen = await walk(`limit=${limit}`, k);
            assert.deepEqual(seen, await idsInDb(tenant));
            assert.deepEqual([...seen].sort(), [...ids].sort());
          },
        ),
        { numRuns: 25 },
      );
    });
  });
});
