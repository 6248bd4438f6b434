import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { adminUrl } from './helpers/db.ts';
import pg from 'pg';

const cacheTier = (res: { headers: Record<string, unknown> }) => /cache;desc=(\w+)/.exec(String(res.headers['server-timing']))?.[1];
const queries = (res: { headers: Record<string, unknown> }) => Number(/desc="(\d+) queries"/.exec(String(res.headers['server-timing']))![1]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('cache (L1 only)', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp({ CACHE_DASHBOARD_DEBOUNCE_MS: 0 });
    key = await t.key('acme');
  });
  after(() => t.close());

  const get = (url: string, headers: Record<string, string> = {}) => t.app.inject({ url, headers: { ...bearer(key), ...headers } });
  const write = (body: unknown) => t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: body as object });
  /** `url` asked for br, then gzip: each compressed, and decoding to `plain`'s JSON. */
  const assertCompressedLike = async (url: string, plain: { json(): unknown }) => {
    for (const [encoding, decode] of [['br', brotliDecompressSync], ['gzip', gunzipSync]] as const) {
      const res = await get(url, { 'accept-encoding': encoding });
      assert.equal(res.headers['content-encoding'], encoding);
      assert.deepEqual(JSON.parse(decode(res.rawPayload).toString()), plain.json(), `${url} ${encoding}`);
    }
  };

  it('serves latest values from L1 after the first read, and a write is visible on the next read', async () => {
    assert.equal((await write([{ device: 'ryw-1', ts: '2026-01-01T00:00:00Z', metrics: { t: 1 } }])).statusCode, 200);
    const first = await get('/v1/devices/ryw-1/latest');
    assert.equal(first.statusCode, 200);
    assert.equal(cacheTier(first), 'miss');
    assert.equal(queries(first), 1);
    const second = await get('/v1/devices/ryw-1/latest');
    assert.equal(cacheTier(second), 'l1');
    assert.equal(queries(second), 0);
    assert.deepEqual(second.json(), first.json());
    assert.ok(!Number.isNaN(Date.parse(first.json().as_of)));

    for (let v = 2; v <= 5; v++) {
      assert.equal((await write([{ device: 'ryw-1', ts: `2026-01-01T00:0${v}:00Z`, metrics: { t: v } }])).statusCode, 200);
      const latest = await get('/v1/devices/ryw-1/latest');
      assert.deepEqual(latest.json().metrics.t, { ts: `2026-01-01T00:0${v}:00.000Z`, value: v });
    }
  });

  it('answers a fresh L1 entry, tagged or not, without a bentocache operation (the hot path)', async () => {
    // PulseCache.l1Hit reads bentocache's L1 entries itself: if their format changed, every
    // hit would take the slow path again (still correct, 3-4x the CPU); this notices
    const operations: string[] = [];
    const channel = diagnostics_channel.tracingChannel('bentocache.cache.operation');
    const handlers = { start: (m: unknown) => operations.push((m as { operation: string }).operation) };
    channel.subscribe(handlers as unknown as Parameters<typeof channel.subscribe>[0]);
    try {
      await write([{ device: 'hot-1', metrics: { t: 1 } }]);
      for (const url of ['/v1/devices/hot-1/latest', '/v1/readings/latest?status=any&limit=7']) {
        assert.equal(cacheTier(await get(url)), 'miss');
        operations.length = 0;
        const hit = await get(url);
        assert.equal(cacheTier(hit), 'l1');
        assert.deepEqual(operations, [], url);
      }
      // a write evicts the tagged dashboard lazily (its entry stays in L1): not served as fresh
      await write([{ device: 'hot-2', metrics: { t: 2 } }]);
      const after = await get('/v1/readings/latest?status=any&limit=7');
      assert.equal(cacheTier(after), 'miss');
      assert.ok(after.json().items.some((i: { device: string }) => i.device === 'hot-2'));
    } finally {
      channel.unsubscribe(handlers as unknown as Parameters<typeof channel.unsubscribe>[0]);
    }
  });

  it('evicts the dashboard on writes (debounce 0: every write)', async () => {
    await write([{ device: 'dash-1', metrics: { t: 1 } }]);
    const before = await get('/v1/readings/latest?status=any');
    assert.ok(before.json().items.some((i: { device: string }) => i.device === 'dash-1'));
    assert.equal(cacheTier(await get('/v1/readings/latest?status=any')), 'l1');
    await write([{ device: 'dash-2', metrics: { t: 2 } }]);
    const after = await get('/v1/readings/latest?status=any');
    assert.equal(cacheTier(after), 'miss');
    assert.ok(after.json().items.some((i: { device: string }) => i.device === 'dash-2'));
    assert.ok(Date.parse(after.json().as_of) >= Date.parse(before.json().as_of));
  });

  it('evicts device records, lists and latest values on create, patch and delete', async () => {
    const list0 = await get('/v1/devices?limit=1000');
    assert.equal((await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(key), payload: { id: 'dev-1', name: 'one' } })).statusCode, 201);
    assert.ok(!list0.json().items.some((d: { id: string }) => d.id === 'dev-1'));
    assert.ok((await get('/v1/devices?limit=1000')).json().items.some((d: { id: string }) => d.id === 'dev-1'));

    assert.equal((await get('/v1/devices/dev-1')).json().name, 'one');
    assert.equal(cacheTier(await get('/v1/devices/dev-1')), 'l1');
    await t.app.inject({ method: 'PATCH', url: '/v1/devices/dev-1', headers: bearer(key), payload: { name: 'uno', status: 'inactive' } });
    assert.equal((await get('/v1/devices/dev-1')).json().name, 'uno');
    assert.equal((await get('/v1/devices?status=active&limit=1000')).json().items.some((d: { id: string }) => d.id === 'dev-1'), false);

    await write([{ device: 'dev-1', metrics: { t: 1 } }]);
    assert.equal((await get('/v1/devices/dev-1/latest')).statusCode, 200);
    assert.equal((await t.app.inject({ method: 'DELETE', url: '/v1/devices/dev-1', headers: bearer(key) })).statusCode, 204);
    assert.equal((await get('/v1/devices/dev-1')).statusCode, 404);
    assert.equal((await get('/v1/devices/dev-1/latest')).statusCode, 404);
  });

  it('evicts the latest values of devices written by a streamed import', async () => {
    await write([{ device: 'imp-1', ts: '2026-01-01T00:00:00Z', metrics: { t: 1 } }]);
    assert.equal((await get('/v1/devices/imp-1/latest')).json().metrics.t.value, 1);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/readings',
      headers: { ...bearer(key), 'content-type': 'application/x-ndjson' },
      payload: '{"device":"imp-1","ts":"2026-01-02T00:00:00Z","metrics":{"t":7}}\n',
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((await get('/v1/devices/imp-1/latest')).json().metrics.t.value, 7);
  });

  it('keeps other tenants apart', async () => {
    const other = await t.key('other');
    await write([{ device: 'shared-id', metrics: { t: 1 } }]);
    assert.equal((await get('/v1/devices/shared-id/latest')).statusCode, 200);
    assert.equal((await t.app.inject({ url: '/v1/devices/shared-id/latest', headers: bearer(other) })).statusCode, 404);
  });

  it('answers If-None-Match with 304, and a changed body with a new ETag', async () => {
    await write([{ device: 'etag-1', metrics: { t: 1 } }]);
    const first = await get('/v1/devices/etag-1');
    const etag = String(first.headers.etag);
    assert.match(etag, /^"[\w-]+"$/);
    assert.equal(first.headers['cache-control'], 'private, no-cache');
    const again = await get('/v1/devices/etag-1', { 'if-none-match': `"other", ${etag}` });
    assert.equal(again.statusCode, 304);
    assert.equal(again.body, '');
    assert.equal(again.headers.etag, etag);
    assert.equal((await get('/v1/devices/etag-1', { 'if-none-match': '"other"' })).statusCode, 200);
    await t.app.inject({ method: 'PATCH', url: '/v1/devices/etag-1', headers: bearer(key), payload: { name: 'renamed' } });
    const changed = await get('/v1/devices/etag-1', { 'if-none-match': etag });
    assert.equal(changed.statusCode, 200);
    assert.notEqual(changed.headers.etag, etag);
  });

  it('negotiates compression (br, gzip, none) and leaves tiny bodies uncompressed', async () => {
    await write(Array.from({ length: 40 }, (_, i) => ({ device: `cmp-${i}`, metrics: { temperature: 20 + i, humidity: 40 } })));
    const url = '/v1/readings/latest?status=any&limit=100';
    const plain = await get(url, { 'accept-encoding': 'identity' });
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.ok(plain.rawPayload.length > 1024);
    await assertCompressedLike(url, plain);
    const tiny = await get('/v1/devices/cmp-1', { 'accept-encoding': 'br, gzip' });
    assert.equal(tiny.headers['content-encoding'], undefined);
    assert.equal(tiny.json().id, 'cmp-1');
  });

  it('compresses answers that are not cached (range pages) in one call up to 64 KiB, and as a stream above', async () => {
    const start = Date.parse('2026-01-02T00:00:00Z');
    const readings = Array.from({ length: 1000 }, (_, i) => ({ device: 'cmp-range', ts: start + i * 60_000, metrics: { temperature: 20 + i / 7, humidity: 40 + i / 3 } }));
    assert.equal((await write(readings)).statusCode, 200);
    for (const limit of [20, 1000]) {
      const url = `/v1/devices/cmp-range/readings?limit=${limit}`;
      const plain = await get(url, { 'accept-encoding': 'identity' });
      assert.equal(plain.json().items.length, limit);
      assert.ok(plain.rawPayload.length > (limit === 20 ? 1024 : 64 * 1024), `${limit}: ${plain.rawPayload.length} bytes`);
      await assertCompressedLike(url, plain);
    }
  });

  it('compresses a cached answer once per change: hits send the same bytes, with one ETag for every encoding', async () => {
    await write(Array.from({ length: 40 }, (_, i) => ({ device: `once-${i}`, metrics: { temperature: 20 + i, humidity: 40 } })));
    const url = '/v1/readings/latest?status=any&limit=50';
    const plain = await get(url);
    const br1 = await get(url, { 'accept-encoding': 'gzip;q=0.5, br' });
    const br2 = await get(url, { 'accept-encoding': 'br' });
    assert.equal(cacheTier(br2), 'l1');
    assert.equal(br2.headers['content-encoding'], 'br');
    assert.ok(br2.rawPayload.equals(br1.rawPayload));
    assert.equal(br2.headers.vary, 'accept-encoding');
    assert.equal(br2.headers.etag, plain.headers.etag);
    // q-values and the aliases @fastify/compress also reads: x-gzip and * mean gzip
    assert.equal((await get(url, { 'accept-encoding': 'br;q=0, gzip' })).headers['content-encoding'], 'gzip');
    assert.equal((await get(url, { 'accept-encoding': 'x-gzip' })).headers['content-encoding'], 'gzip');
    assert.equal((await get(url, { 'accept-encoding': '*' })).headers['content-encoding'], 'gzip');
    const metrics = (await t.app.inject({ url: '/metrics' })).body;
    assert.ok(Number(/^pulse_cache_compressed_bytes (\d+)/m.exec(metrics)![1]) > 0);
    // a write changes the answer: a new body, a new ETag, compressed again
    await write([{ device: 'once-0', metrics: { temperature: 99 } }]);
    const changed = await get(url, { 'accept-encoding': 'br', 'if-none-match': String(plain.headers.etag) });
    assert.equal(changed.statusCode, 200);
    assert.notEqual(changed.headers.etag, plain.headers.etag);
    const body = JSON.parse(brotliDecompressSync(changed.rawPayload).toString());
    assert.equal(body.items.find((i: { device: string }) => i.device === 'once-0').metrics.temperature.value, 99);
  });
});

describe('cache of stats over closed time', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp();
    key = await t.key('stats-cache');
  });
  after(() => t.close());

  const HOUR = 3_600_000;
  const iso = (ms: number) => new Date(ms).toISOString();
  const get = (url: string) => t.app.inject({ url, headers: bearer(key) });
  const write = (body: unknown) => t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: body as object });
  const count = (res: { json(): { buckets: { count: number }[] } }) => res.json().buckets.reduce((n, b) => n + b.count, 0);

  it('caches a closed window until a late reading of the device evicts it; current readings do not', async () => {
    const now = Math.floor(Date.now() / HOUR) * HOUR;
    const ts = (hoursAgo: number) => iso(now - hoursAgo * HOUR);
    assert.equal((await write([3, 4, 5].map((h) => ({ device: 'sc-1', ts: ts(h), metrics: { temp: h } })))).statusCode, 200);
    const closedUrl = `/v1/devices/sc-1/stats?metric=temp&bucket=1h&from=${ts(6)}&to=${ts(2)}`;
    const fleetUrl = `/v1/stats?metric=temp&bucket=1h&from=${ts(6)}&to=${ts(2)}`;
    const first = await get(closedUrl);
    assert.equal(first.statusCode, 200);
    assert.equal(cacheTier(first), 'miss');
    assert.equal(count(first), 3);
    const fleet = await get(fleetUrl);
    assert.equal(cacheTier(fleet), 'miss');
    const hit = await get(closedUrl);
    assert.equal(cacheTier(hit), 'l1');
    assert.equal(queries(hit), 0);
    assert.equal(hit.body, first.body);
    assert.equal(cacheTier(await get(fleetUrl)), 'l1');

    // a reading of now changes no closed window: the entries stay
    assert.equal((await write([{ device: 'sc-1', metrics: { temp: 100 } }])).statusCode, 200);
    assert.equal(cacheTier(await get(closedUrl)), 'l1');
    assert.equal(cacheTier(await get(fleetUrl)), 'l1');

    // a late reading inside the window: evicted before the write is acknowledged
    assert.equal((await write([{ device: 'sc-1', ts: ts(3.5), metrics: { temp: 7 } }])).statusCode, 200);
    const after = await get(closedUrl);
    assert.equal(cacheTier(after), 'miss');
    assert.equal(count(after), 4);
    const fleetAfter = await get(fleetUrl);
    assert.equal(cacheTier(fleetAfter), 'miss');
    assert.equal(count(fleetAfter), 4);
  });

  it('does not cache a window that reaches into the last hour', async () => {
    await write([{ device: 'sc-2', metrics: { temp: 1 } }]);
    const url = `/v1/devices/sc-2/stats?metric=temp&bucket=1h&from=${iso(Date.now() - 3 * HOUR)}&to=${iso(Date.now() + 60_000)}`;
    for (let i = 0; i < 2; i++) {
      const res = await get(url);
      assert.equal(res.statusCode, 200);
      assert.equal(cacheTier(res), undefined);
    }
  });

  it("evicts fleet stats when a device changes status, and a device's stats when it is deleted", async () => {
    const at = iso(Date.now() - 5 * HOUR);
    await write([{ device: 'sc-3', ts: at, metrics: { temp: 1 } }, { device: 'sc-4', ts: at, metrics: { temp: 2 } }]);
    const window = `metric=temp&bucket=1d&from=${iso(Date.now() - 10 * HOUR)}&to=${iso(Date.now() - 2 * HOUR)}`;
    const fleetUrl = `/v1/stats?${window}&status=active`;
    const before = count(await get(fleetUrl));
    assert.equal(cacheTier(await get(fleetUrl)), 'l1');
    assert.equal((await t.app.inject({ method: 'PATCH', url: '/v1/devices/sc-4', headers: bearer(key), payload: { status: 'inactive' } })).statusCode, 200);
    const after = await get(fleetUrl);
    assert.equal(cacheTier(after), 'miss');
    assert.equal(count(after), before - 1);

    const deviceUrl = `/v1/devices/sc-3/stats?${window}`;
    assert.equal((await get(deviceUrl)).statusCode, 200);
    assert.equal(cacheTier(await get(deviceUrl)), 'l1');
    assert.equal((await t.app.inject({ method: 'DELETE', url: '/v1/devices/sc-3', headers: bearer(key) })).statusCode, 204);
    assert.equal((await get(deviceUrl)).statusCode, 404);
  });
});

describe('cache stampede', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    // long enough that the re-read entry cannot expire again while the 200 requests run
    t = await createTestApp({ CACHE_DYNAMIC_TTL_MS: 3_000 });
    key = await t.key('acme');
  });
  after(() => t.close());

  const url = '/v1/devices/hot/latest';
  const burst = async (value: number) => {
    const all = await Promise.all(Array.from({ length: 200 }, () => t.app.inject({ url, headers: bearer(key) })));
    assert.ok(all.every((r) => r.statusCode === 200));
    assert.equal(all.reduce((n, r) => n + queries(r), 0), 1); // database queries made by the 200 requests
    assert.equal(all.filter((r) => cacheTier(r) === 'miss').length, 1);
    assert.ok(all.every((r) => r.json().metrics.t.value === value && r.headers['x-cache-stale'] === undefined));
  };

  it('reads an expired hot key from the database once under 200 concurrent requests', async () => {
    await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device: 'hot', metrics: { t: 1 } }] });
    assert.equal(cacheTier(await t.app.inject({ url, headers: bearer(key) })), 'miss');
    await sleep(3_100); // past CACHE_DYNAMIC_TTL_MS: expired, kept for grace
    await burst(1);
  });

  it('reads an evicted hot key from the database once under 200 concurrent requests', async () => {
    await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device: 'hot', metrics: { t: 2 } }] });
    await burst(2);
  });
});

describe('cache when the database fails', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    // the key stays verified in memory: only the cached reads are under test
    t = await createTestApp({ CACHE_DYNAMIC_TTL_MS: 100, CACHE_STATIC_TTL_MS: 100, AUTH_CACHE_TTL_MS: 600_000 });
    key = await t.key('acme');
  });
  after(() => t.close());

  it('serves expired entries marked stale, and fails what it never cached', async () => {
    await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device: 'd1', metrics: { t: 1 } }, { device: 'd2', metrics: { t: 2 } }] });
    const fresh = await t.app.inject({ url: '/v1/devices/d1/latest', headers: bearer(key) });
    const device = await t.app.inject({ url: '/v1/devices/d1', headers: bearer(key) });
    assert.equal(fresh.statusCode, 200);
    assert.equal(device.statusCode, 200);
    await sleep(150);
    const admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    await admin.query(`drop database ${t.db.name} with (force)`);
    await admin.end();

    for (let i = 0; i < 3; i++) {
      const stale = await t.app.inject({ url: '/v1/devices/d1/latest', headers: bearer(key) });
      assert.equal(stale.statusCode, 200, stale.body);
      assert.equal(stale.headers['x-cache-stale'], 'true');
      assert.deepEqual(stale.json(), fresh.json()); // as_of included: when it was really read
    }
    const staleDevice = await t.app.inject({ url: '/v1/devices/d1', headers: bearer(key) });
    assert.equal(staleDevice.headers['x-cache-stale'], 'true');
    assert.deepEqual(staleDevice.json(), device.json());
    const never = await t.app.inject({ url: '/v1/devices/d2/latest', headers: bearer(key) });
    assert.ok(never.statusCode >= 500, never.body);
    assert.equal(never.headers['x-cache-stale'], undefined);
    const metrics = await t.app.inject({ url: '/metrics' });
    assert.match(metrics.body, /pulse_cache_lookups_total\{kind="latest",result="stale"\} [1-9]/);
  });
});

describe('cache disabled (CACHE_ENABLED=false)', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp({ CACHE_ENABLED: false });
    key = await t.key('acme');
  });
  after(() => t.close());

  it('reads the database on every request', async () => {
    await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device: 'off-1', metrics: { t: 1 } }] });
    for (let i = 0; i < 2; i++) {
      const res = await t.app.inject({ url: '/v1/devices/off-1/latest', headers: bearer(key) });
      assert.equal(res.statusCode, 200);
      assert.equal(queries(res), 1);
      assert.equal(cacheTier(res), undefined);
      assert.ok(res.json().as_of);
    }
  });
});
