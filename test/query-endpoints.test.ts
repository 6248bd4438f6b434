import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bearer, createTestApp, withoutAsOf, type TestApp } from './helpers/app.ts';
import type { StatsBucket } from './helpers/stats.ts';

/** One reading of the range endpoint: a device's values at one timestamp. */
interface Item {
  ts: string;
  metrics: Record<string, number>;
}
type Bucket = StatsBucket;

const BUCKET_MS = { '1m': 60_000, '1h': 3_600_000, '1d': 86_400_000 } as const;
type BucketName = keyof typeof BUCKET_MS;
const iso = (ms: number) => new Date(ms).toISOString();

/** count/min/max/avg/sum/first/last per bucket (aligned to the epoch, as the API documents), computed here. */
function expectedStats(points: { ms: number; value: number }[], bucket: BucketName, fromMs: number, toMs: number): Bucket[] {
  const size = BUCKET_MS[bucket];
  const groups = new Map<number, number[]>();
  for (const p of [...points].sort((a, b) => a.ms - b.ms)) {
    if (p.ms < fromMs || p.ms >= toMs) continue;
    const start = Math.floor(p.ms / size) * size;
    if (!groups.has(start)) groups.set(start, []);
    groups.get(start)!.push(p.value);
  }
  return [...groups.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([start, vs]) => ({
      ts: iso(start),
      count: vs.length,
      min: Math.min(...vs),
      max: Math.max(...vs),
      avg: vs.reduce((s, v) => s + v, 0) / vs.length,
      sum: vs.reduce((s, v) => s + v, 0),
      first: vs[0]!,
      last: vs[vs.length - 1]!,
    }));
}

function assertStatsEqual(actual: Bucket[], expected: Bucket[], what: string) {
  assert.deepEqual(
    actual.map((b) => ({ ...b, avg: 0, sum: 0 })),
    expected.map((b) => ({ ...b, avg: 0, sum: 0 })),
    what,
  );
  // float8 sums depend on the order of addition: equal to 1e-9, relative
  actual.forEach((b, i) => {
    for (const k of ['avg', 'sum'] as const) {
      const e = expected[i]![k];
      assert.ok(Math.abs(b[k] - e) <= 1e-9 * Math.max(1, Math.abs(e)), `${what}: ${k} of ${b.ts} is ${b[k]}, expected ${e}`);
    }
  });
}

describe('query endpoints', () => {
  let t: TestApp;
  let key: string;
  before(async () => {
    t = await createTestApp();
    key = await t.key('acme');
  });
  after(() => t.close());

  const get = (url: string, k = key) => t.app.inject({ url, headers: bearer(k) });
  const write = async (readings: unknown[], k = key) => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(k), payload: readings as object[] });
    assert.equal(res.statusCode, 200, res.body);
    return res.json();
  };
  /** Every page of the range endpoint. */
  async function walkRange(device: string, query: string) {
    const items: Item[] = [];
    let cursor: string | null = null;
    let pages = 0;
    for (;;) {
      assert.ok(++pages < 10_000, 'pagination does not end');
      const url: string = `/v1/devices/${device}/readings?${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await get(url);
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json() as { device: string; items: Item[]; next_cursor: string | null };
      assert.deepEqual(Object.keys(body).sort(), ['device', 'items', 'next_cursor']);
      assert.equal(body.device, device);
      const limit = Number(new URLSearchParams(query).get('limit') ?? 1000);
      // `limit` counts readings: a page is never larger; a page with a cursor after it is full
      assert.ok(body.items.length <= limit, `page of ${body.items.length} > limit ${limit}`);
      if (body.next_cursor !== null) assert.equal(body.items.length, limit, 'a page followed by a cursor is full');
      items.push(...body.items);
      cursor = body.next_cursor;
      if (cursor === null) return { items, pages };
    }
  }

  describe('range: GET /v1/devices/:device/readings', () => {
    // readings of three metrics (co2 only in every third one), so the metric filter skips
    // readings; some timestamps with milliseconds, some sent as epoch ms
    const start = Date.parse('2026-11-06T00:00:00Z');
    /** The readings written: ts -> metrics, newest first. */
    const written: Item[] = [];
    before(async () => {
      const readings = [];
      for (let i = 0; i < 40; i++) {
        const ms = start + i * 90_000 + (i % 4) * 250; // some with milliseconds
        const metrics: Record<string, number> = { temp: 20 + i / 4, hum: 50 - i / 2 };
        if (i % 3 === 0) metrics.co2 = 400 + i;
        readings.push({ device: 'range-1', ts: i % 2 ? iso(ms) : ms, metrics });
        written.push({ ts: iso(ms), metrics });
      }
      written.sort(byNewest);
      await write(readings);
    });
    const byNewest = (a: Item, b: Item) => (a.ts < b.ts ? 1 : a.ts > b.ts ? -1 : 0);
    /** The readings that have `metric`, with only that metric (what `?metric=` returns). */
    const only = (items: Item[], metric: string): Item[] =>
      items.filter((w) => metric in w.metrics).map((w) => ({ ts: w.ts, metrics: { [metric]: w.metrics[metric]! } }));
    const strictlyNewestFirst = (items: Item[]) => items.every((it, i) => i === 0 || it.ts < items[i - 1]!.ts);

    it('returns every reading, newest first, with all its metrics, when no filter is given', async () => {
      const res = await get('/v1/devices/range-1/readings');
      assert.equal(res.statusCode, 200);
      const body = res.json();
      assert.deepEqual(Object.keys(body).sort(), ['device', 'items', 'next_cursor']);
      assert.equal(body.device, 'range-1');
      assert.equal(body.next_cursor, null);
      assert.equal(body.items.length, 40, 'one item per reading (device + ts), not per value');
      assert.deepEqual(body.items, written);
      assert.ok(strictlyNewestFirst(body.items));
      const sample = body.items.find((i: Item) => i.ts === iso(start + 5 * 90_000 + 250));
      assert.deepEqual(sample, { ts: '2026-11-06T00:07:30.250Z', metrics: { temp: 21.25, hum: 47.5 } });
      const withCo2 = body.items.find((i: Item) => i.ts === iso(start + 6 * 90_000 + 500));
      assert.deepEqual(withCo2, { ts: '2026-11-06T00:09:00.500Z', metrics: { temp: 21.5, hum: 47, co2: 406 } });
    });

    it('filters by metric: only the readings that have it, with only that metric', async () => {
      const body = (await get('/v1/devices/range-1/readings?metric=co2')).json();
      const expected = only(written, 'co2');
      assert.equal(expected.length, 14);
      assert.deepEqual(body, { device: 'range-1', items: expected, next_cursor: null });
      const temp = (await get('/v1/devices/range-1/readings?metric=temp')).json();
      assert.deepEqual(temp.items, only(written, 'temp'));
      assert.equal(temp.items.length, 40);
    });

    it('from is inclusive, to exclusive (RFC 3339 or epoch ms)', async () => {
      const from = iso(start + 10 * 90_000);
      const to = start + 20 * 90_000;
      const inWindow = (w: Item) => Date.parse(w.ts) >= Date.parse(from) && Date.parse(w.ts) < to;
      const body = (await get(`/v1/devices/range-1/readings?metric=temp&from=${from}&to=${to}`)).json();
      const expected = only(written.filter(inWindow), 'temp');
      assert.ok(expected.length > 0);
      assert.deepEqual(body.items, expected);
      // without a metric: whole readings in the window
      const all = (await get(`/v1/devices/range-1/readings?from=${start + 10 * 90_000}&to=${iso(to)}`)).json();
      assert.deepEqual(all.items, written.filter(inWindow));
      // a reading exactly at `from` is included, one exactly at `to` is not
      const exact = iso(start + 8 * 90_000); // i = 8: no millisecond offset
      const atFrom = (await get(`/v1/devices/range-1/readings?metric=temp&from=${exact}&to=2026-11-07T00:00:00Z`)).json();
      assert.equal(atFrom.items.at(-1).ts, exact);
      const atTo = (await get(`/v1/devices/range-1/readings?metric=temp&to=${exact}`)).json();
      assert.ok(atTo.items.length > 0);
      assert.ok(atTo.items.every((i: Item) => i.ts < exact));
      assert.equal(atTo.items[0].ts, iso(start + 7 * 90_000 + 750));
      // the same bounds as epoch milliseconds
      const atToMs = (await get(`/v1/devices/range-1/readings?metric=temp&to=${Date.parse(exact)}`)).json();
      assert.deepEqual(atToMs, atTo);
      // a one-millisecond window around a reading holds exactly that reading
      const one = (await get(`/v1/devices/range-1/readings?from=${Date.parse(exact)}&to=${Date.parse(exact) + 1}`)).json();
      assert.deepEqual(one.items, written.filter((w) => w.ts === exact));
    });

    it('keyset pages cover every reading exactly once, newest first; limit counts readings', async () => {
      for (const limit of [1, 2, 3, 7, 39, 40, 41, 50]) {
        const { items, pages } = await walkRange('range-1', `limit=${limit}`);
        assert.equal(new Set(items.map((i) => i.ts)).size, items.length, `duplicates at limit=${limit}`);
        assert.deepEqual(items, written, `limit=${limit}`);
        assert.ok(strictlyNewestFirst(items), `not newest first at limit=${limit}`);
        // a last page exactly full is followed by an empty one
        assert.equal(pages, Math.floor(written.length / limit) + 1, `pages at limit=${limit}`);
      }
      // the cursor is the ts of the last item of the page: the next page starts strictly before it
      const first = (await get('/v1/devices/range-1/readings?limit=5')).json();
      assert.equal(first.items.length, 5);
      assert.equal(typeof first.next_cursor, 'string');
      const second = (await get(`/v1/devices/range-1/readings?limit=5&cursor=${encodeURIComponent(first.next_cursor)}`)).json();
      assert.deepEqual([...first.items, ...second.items], written.slice(0, 10));
      // with a metric filter and a window as well: limit counts the readings that have the metric
      for (const limit of [1, 2, 4, 5]) {
        const { items } = await walkRange('range-1', `limit=${limit}&metric=co2&from=2026-11-06T00:15:00Z&to=2026-11-06T00:45:00Z`);
        const expected = only(written.filter((w) => w.ts >= '2026-11-06T00:15:00.000Z' && w.ts < '2026-11-06T00:45:00.000Z'), 'co2');
        assert.ok(expected.length > limit);
        assert.deepEqual(items, expected, `co2, limit=${limit}`);
      }
      const { items } = await walkRange('range-1', 'limit=4&metric=hum&from=2026-11-06T00:15:00Z&to=2026-11-06T00:45:00Z');
      assert.deepEqual(
        items,
        only(written.filter((w) => w.ts >= '2026-11-06T00:15:00.000Z' && w.ts < '2026-11-06T00:45:00.000Z'), 'hum'),
      );
    });

    it('a reading sent in parts is one item with the merged metrics', async () => {
      await write([{ device: 'range-parts', ts: '2026-11-06T01:00:00Z', metrics: { a: 1, b: 2 } }]);
      await write([{ device: 'range-parts', ts: '2026-11-06T01:00:00Z', metrics: { b: 3, c: 4 } }]);
      await write([{ device: 'range-parts', ts: '2026-11-06T00:59:00Z', metrics: { a: 0 } }]);
      assert.deepEqual((await get('/v1/devices/range-parts/readings')).json(), {
        device: 'range-parts',
        items: [
          { ts: '2026-11-06T01:00:00.000Z', metrics: { a: 1, b: 3, c: 4 } },
          { ts: '2026-11-06T00:59:00.000Z', metrics: { a: 0 } },
        ],
        next_cursor: null,
      });
      assert.deepEqual((await get('/v1/devices/range-parts/readings?metric=c')).json().items, [
        { ts: '2026-11-06T01:00:00.000Z', metrics: { c: 4 } },
      ]);
    });

    it('a metric the device does not have: 200, no items; an unknown device: 404', async () => {
      assert.deepEqual((await get('/v1/devices/range-1/readings?metric=pressure')).json(), { device: 'range-1', items: [], next_cursor: null });
      const res = await get('/v1/devices/range-missing/readings');
      assert.equal(res.statusCode, 404);
      assert.equal(res.json().type, '/problems/not-found');
      // a device without readings: 200, no items
      assert.equal((await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(key), payload: { id: 'range-empty' } })).statusCode, 201);
      assert.deepEqual((await get('/v1/devices/range-empty/readings')).json(), { device: 'range-empty', items: [], next_cursor: null });
    });

    it('property: pages cover every reading exactly once for any data, page size and metric filter', async () => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({
              second: fc.integer({ min: 0, max: 20 }), // few distinct timestamps: many parts of one reading
              metrics: fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd'), fc.integer({ min: -100, max: 100 }), { minKeys: 1 }),
            }),
            { minLength: 1, maxLength: 30 },
          ),
          fc.integer({ min: 1, max: 10 }),
          fc.integer({ min: 1, max: 30 }), // readings per request: parts of one reading in one request or several
          fc.option(fc.constantFrom('a', 'b', 'c', 'd', 'e'), { nil: undefined }),
          async (rows, limit, perRequest, metric) => {
            const device = `prop-range-${run++}`;
            const readings = rows.map((r) => ({ device, ts: start + r.second * 1000, metrics: r.metrics }));
            for (let i = 0; i < readings.length; i += perRequest) await write(readings.slice(i, i + perRequest));
            // the model: one reading per ts, its parts merged, the later value of a metric winning
            const model = new Map<string, Record<string, number>>();
            for (const r of rows) {
              const ts = iso(start + r.second * 1000);
              model.set(ts, { ...model.get(ts), ...r.metrics });
            }
            let expected: Item[] = [...model.entries()].map(([ts, metrics]) => ({ ts, metrics })).sort(byNewest);
            if (metric) expected = only(expected, metric);
            const { items, pages } = await walkRange(device, `limit=${limit}${metric ? `&metric=${metric}` : ''}`);
            assert.equal(items.length, expected.length);
            assert.equal(new Set(items.map((i) => i.ts)).size, items.length, 'duplicates');
            assert.ok(strictlyNewestFirst(items));
            assert.deepEqual(items, expected);
            assert.equal(pages, Math.floor(expected.length / limit) + 1);
          },
        ),
        { numRuns: 30 },
      );
    });
  });

  describe('stats: GET /v1/devices/:device/stats', () => {
    const points: { ms: number; value: number }[] = [];
    const fromMs = Date.parse('2026-11-06T00:00:00Z');
    const toMs = Date.parse('2026-11-09T00:00:00Z');
    before(async () => {
      // irregular spacing over three days, some readings in the same minute, values in
      // quarters so sums are exact
      let ms = fromMs - 3_600_000; // an hour before the window: must not be counted
      let seed = 7;
      const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const readings = [];
      while (ms < toMs + 3_600_000) {
        const value = Math.round((rnd() * 200 - 100) * 4) / 4;
        readings.push({ device: 'stats-1', ts: ms, metrics: { temp: value, other: 1 } });
        points.push({ ms, value });
        ms += Math.floor(rnd() * 1_200_000) + 1_000;
      }
      for (let i = 0; i < readings.length; i += 1000) await write(readings.slice(i, i + 1000));
    });

    for (const bucket of ['1m', '1h', '1d'] as const) {
      it(`count/min/max/avg per ${bucket} bucket equal a computation over the data written`, async () => {
        const res = await get(`/v1/devices/stats-1/stats?metric=temp&bucket=${bucket}&from=${iso(fromMs)}&to=${iso(toMs)}`);
        assert.equal(res.statusCode, 200, res.body);
        const body = res.json();
        assert.equal(body.device, 'stats-1');
        assert.equal(body.metric, 'temp');
        assert.equal(body.bucket, bucket);
        assert.equal(body.from, iso(fromMs));
        assert.equal(body.to, iso(toMs));
        const expected = expectedStats(points, bucket, fromMs, toMs);
        assert.ok(expected.length > 1);
        assertStatsEqual(body.buckets, expected, bucket);
        assert.equal(
          body.buckets.reduce((s: number, b: Bucket) => s + b.count, 0),
          points.filter((p) => p.ms >= fromMs && p.ms < toMs).length,
        );
      });
    }

    it('a window that is not bucket-aligned counts only readings inside it', async () => {
      const from = Date.parse('2026-11-06T10:17:30Z');
      const to = Date.parse('2026-11-07T03:05:00Z');
      const body = (await get(`/v1/devices/stats-1/stats?metric=temp&bucket=1h&from=${iso(from)}&to=${to}`)).json();
      assertStatsEqual(body.buckets, expectedStats(points, '1h', from, to), 'unaligned');
    });

    it('defaults to 1h buckets', async () => {
      const body = (await get(`/v1/devices/stats-1/stats?metric=temp&from=${iso(fromMs)}&to=${iso(fromMs + 86_400_000)}`)).json();
      assert.equal(body.bucket, '1h');
      assertStatsEqual(body.buckets, expectedStats(points, '1h', fromMs, fromMs + 86_400_000), 'default');
    });

    it('too many buckets is 400', async () => {
      const res = await get('/v1/devices/stats-1/stats?metric=temp&bucket=1m&from=2026-11-01T00:00:00Z&to=2026-11-09T00:00:00Z');
      assert.equal(res.statusCode, 400);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assert.match(res.json().detail, /bucket/);
      const hours = await get('/v1/devices/stats-1/stats?metric=temp&bucket=1h&from=2025-01-01T00:00:00Z&to=2026-11-09T00:00:00Z');
      assert.equal(hours.statusCode, 400);
      const days = await get('/v1/devices/stats-1/stats?metric=temp&bucket=1d&from=2025-01-01T00:00:00Z&to=2026-11-09T00:00:00Z');
      assert.equal(days.statusCode, 200, days.body);
    });

    it('a metric the device does not have: 200, no buckets; an unknown device: 404', async () => {
      const res = await get(`/v1/devices/stats-1/stats?metric=nothing&from=${iso(fromMs)}&to=${iso(toMs)}`);
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json().buckets, []);
      assert.equal((await get('/v1/devices/stats-missing/stats?metric=temp')).statusCode, 404);
    });

    it('property: stats equal the raw aggregation for any readings and bucket', async () => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({ offsetS: fc.integer({ min: 0, max: 3 * 86_400 - 1 }), value: fc.integer({ min: -1000, max: 1000 }).map((v) => v / 4) }),
            { minLength: 1, maxLength: 60 },
          ),
          fc.constantFrom<BucketName>('1m', '1h', '1d'),
          async (rows, bucket) => {
            const device = `prop-stats-${run++}`;
            await write(rows.map((r) => ({ device, ts: fromMs + r.offsetS * 1000, metrics: { v: r.value } })));
            const last = new Map<number, number>(); // the same ts again overwrites
            for (const r of rows) last.set(fromMs + r.offsetS * 1000, r.value);
            const pts = [...last.entries()].map(([ms, value]) => ({ ms, value }));
            const res = await get(`/v1/devices/${device}/stats?metric=v&bucket=${bucket}&from=${iso(fromMs)}&to=${iso(toMs)}`);
            assert.equal(res.statusCode, 200, res.body);
            assertStatsEqual(res.json().buckets, expectedStats(pts, bucket, fromMs, toMs), bucket);
          },
        ),
        { numRuns: 20 },
      );
    });
  });

  describe('latest: GET /v1/devices/:device/latest', () => {
    it('a device with no readings: 200 with empty metrics', async () => {
      assert.equal((await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(key), payload: { id: 'empty-1' } })).statusCode, 201);
      const res = await get('/v1/devices/empty-1/latest');
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(withoutAsOf(res.json()), { device: 'empty-1', metrics: {} });
    });

    it('the newest value of every metric, each with its own timestamp', async () => {
      await write([
        { device: 'latest-1', ts: '2026-11-07T10:00:00Z', metrics: { a: 1, b: 2 } },
        { device: 'latest-1', ts: '2026-11-07T11:00:00.123456Z', metrics: { a: 3 } },
        { device: 'latest-1', ts: '2026-11-07T09:00:00Z', metrics: { b: 0 } },
      ]);
      assert.deepEqual(withoutAsOf((await get('/v1/devices/latest-1/latest')).json()), {
        device: 'latest-1',
        metrics: { a: { ts: '2026-11-07T11:00:00.123456Z', value: 3 }, b: { ts: '2026-11-07T10:00:00.000Z', value: 2 } },
      });
    });
  });

  describe('dashboard: GET /v1/readings/latest', () => {
    // `since` is a window back from the server's clock, so these readings are placed
    // relative to now (whole minutes, all in the past), not on fixed dates
    const base = Math.floor(Date.now() / 60_000) * 60_000;
    const h = 3_600_000;
    let k: string;
    const devices = (body: { items: { device: string }[] }) => body.items.map((i) => i.device);
    before(async () => {
      k = await t.key('dash-tenant');
      await write(
        [
          { device: 'dash-a', ts: base - 5 * h, metrics: { t: 1.5 } },
          { device: 'dash-a', ts: base - 6 * h, metrics: { h: 40 } },
          { device: 'dash-b', ts: base - 2 * h, metrics: { t: 2 } },
          { device: 'dash-c', ts: base - 1 * h, metrics: { t: 3 } },
          { device: 'dash-d', ts: base - 30 * h, metrics: { t: 4 } },
          { device: 'dash-recent', ts: base - 600_000, metrics: { t: 5, h: 50 } },
          { device: 'dash-old', ts: '2026-11-01T00:00:00Z', metrics: { t: 6 } },
        ],
        k,
      );
      const p = await t.app.inject({ method: 'PATCH', url: '/v1/devices/dash-c', headers: bearer(k), payload: { status: 'inactive' } });
      assert.equal(p.statusCode, 200, p.body);
      const e = await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(k), payload: { id: 'dash-empty' } });
      assert.equal(e.statusCode, 201, e.body);
    });

    it('defaults: active devices with readings in the last day, newest first, with their latest values', async () => {
      const res = await get('/v1/readings/latest', k);
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json();
      assert.deepEqual(devices(body), ['dash-recent', 'dash-b', 'dash-a']);
      assert.deepEqual(body.items[0], {
        device: 'dash-recent',
        ts: iso(base - 600_000),
        metrics: { h: { ts: iso(base - 600_000), value: 50 }, t: { ts: iso(base - 600_000), value: 5 } },
      });
      assert.deepEqual(body.items[2], {
        device: 'dash-a',
        ts: iso(base - 5 * h),
        metrics: { h: { ts: iso(base - 6 * h), value: 40 }, t: { ts: iso(base - 5 * h), value: 1.5 } },
      });
    });

    it('status filter: inactive devices are excluded by default, shown on request', async () => {
      assert.deepEqual(devices((await get('/v1/readings/latest?status=inactive', k)).json()), ['dash-c']);
      assert.deepEqual(devices((await get('/v1/readings/latest?status=active', k)).json()), ['dash-recent', 'dash-b', 'dash-a']);
      assert.deepEqual(devices((await get('/v1/readings/latest?status=any', k)).json()), ['dash-recent', 'dash-c', 'dash-b', 'dash-a']);
    });

    it('the since window', async () => {
      assert.deepEqual(devices((await get('/v1/readings/latest?since=3h', k)).json()), ['dash-recent', 'dash-b']);
      assert.deepEqual(devices((await get('/v1/readings/latest?since=30m', k)).json()), ['dash-recent']);
      assert.deepEqual(devices((await get('/v1/readings/latest?since=2d', k)).json()), ['dash-recent', 'dash-b', 'dash-a', 'dash-d']);
      assert.deepEqual(devices((await get('/v1/readings/latest?since=90s', k)).json()), []);
      const all = devices((await get('/v1/readings/latest?since=366d&status=any', k)).json());
      assert.deepEqual(all, ['dash-recent', 'dash-c', 'dash-b', 'dash-a', 'dash-d', 'dash-old']);
      assert.ok(!all.includes('dash-empty'), 'a device without readings has no latest values');
    });

    it('limit', async () => {
      assert.deepEqual(devices((await get('/v1/readings/latest?limit=2', k)).json()), ['dash-recent', 'dash-b']);
      assert.deepEqual(devices((await get('/v1/readings/latest?limit=1&status=any', k)).json()), ['dash-recent']);
    });

    it('follows status changes', async () => {
      const p = await t.app.inject({ method: 'PATCH', url: '/v1/devices/dash-b', headers: bearer(k), payload: { status: 'inactive' } });
      assert.equal(p.statusCode, 200);
      try {
        assert.deepEqual(devices((await get('/v1/readings/latest', k)).json()), ['dash-recent', 'dash-a']);
      } finally {
        await t.app.inject({ method: 'PATCH', url: '/v1/devices/dash-b', headers: bearer(k), payload: { status: 'active' } });
      }
    });
  });

  describe('operational endpoints', () => {
    it('/healthz: 200 without a key', async () => {
      const res = await t.app.inject({ url: '/healthz' });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { status: 'ok' });
    });

    it('/readyz: 200 (database reachable, migrations current)', async () => {
      const res = await t.app.inject({ url: '/readyz' });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().status, 'ok');
    });

    it('/readyz: 503 when the database is behind the code migrations', async () => {
      const { rows } = await t.db.pool.query('select version, name, applied_at from pulse_migrations order by version desc limit 1');
      const last = rows[0];
      await t.db.pool.query('delete from pulse_migrations where version = $1', [last.version]);
      try {
        const res = await t.app.inject({ url: '/readyz' });
        assert.equal(res.statusCode, 503, res.body);
        assert.match(res.json().detail, /migration/);
      } finally {
        await t.db.pool.query('insert into pulse_migrations (version, name, applied_at) values ($1, $2, $3)', [last.version, last.name, last.applied_at]);
      }
      assert.equal((await t.app.inject({ url: '/readyz' })).statusCode, 200);
    });

    it('/metrics: Prometheus text with request, query and pool metrics', async () => {
      await get('/v1/devices/latest-1/latest'); // at least one request and query to observe
      const res = await t.app.inject({ url: '/metrics' });
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /^text\/plain/);
      const text = res.body;
      for (const name of ['pulse_http_request_duration_seconds', 'pulse_db_query_duration_seconds', 'pulse_db_pool_connections']) {
        assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
      }
      assert.match(text, /^pulse_http_request_duration_seconds_count\{[^}]*route="\/v1\/devices\/:device\/latest"[^}]*status="200"[^}]*\} [1-9]/m);
      assert.match(text, /^pulse_db_query_duration_seconds_count\{[^}]*query="readings.latest_of_device"[^}]*\} [1-9]/m);
      assert.match(text, /^pulse_db_pool_connections\{[^}]*state="idle"[^}]*\} \d+/m);
      assert.match(text, /^process_cpu_user_seconds_total /m, 'process defaults');
    });

    it('/openapi.json: OpenAPI 3 with the /v1 paths', async () => {
      const res = await t.app.inject({ url: '/openapi.json' });
      assert.equal(res.statusCode, 200);
      const doc = res.json();
      assert.match(doc.openapi, /^3\.\d+\.\d+$/);
      assert.equal(typeof doc.info.title, 'string');
      const expected: Record<string, string[]> = {
        '/v1/devices': ['get', 'post'],
        '/v1/devices/{device}': ['delete', 'get', 'patch'],
        '/v1/devices/{device}/latest': ['get'],
        '/v1/devices/{device}/readings': ['get'],
        '/v1/devices/{device}/stats': ['get'],
        '/v1/readings': ['post'],
        '/v1/readings/latest': ['get'],
      };
      for (const [path, methods] of Object.entries(expected)) {
        assert.ok(doc.paths[path], `missing ${path}`);
        for (const m of methods) {
          const op = doc.paths[path][m];
          assert.ok(op, `missing ${m.toUpperCase()} ${path}`);
          assert.ok(op.responses && Object.keys(op.responses).some((s) => s.startsWith('2')), `${m} ${path}: no 2xx response`);
        }
      }
      const list = doc.paths['/v1/devices'].get;
      assert.deepEqual(
        list.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`).sort(),
        ['query:cursor', 'query:limit', 'query:status'],
      );
      assert.ok(doc.paths['/v1/readings'].post.requestBody, 'POST /v1/readings documents its body');
      assert.ok(doc.components?.securitySchemes?.bearer, 'bearer auth is documented');
    });

    it('/docs: Swagger UI (200 HTML or a redirect to it)', async () => {
      let res = await t.app.inject({ url: '/docs' });
      if (res.statusCode >= 300 && res.statusCode < 400) {
        assert.ok(res.headers.location, 'redirect without a location');
        res = await t.app.inject({ url: new URL(String(res.headers.location), 'http://localhost/docs').pathname });
      }
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /text\/html/);
      assert.match(res.body, /swagger/i);
    });
  });
});
