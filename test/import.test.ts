import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { startServer, type ServerProcess } from './helpers/server.ts';
import { createKey } from '../src/modules/keys/service.ts';
import { loadConfig } from '../src/config.ts';
import { Database } from '../src/infra/db.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { ensurePartitionsBetween } from '../src/infra/partitions.ts';
import pino from 'pino';

const DEVICES = 100;
const BASE_MS = Date.UTC(2026, 9, 1);
const HEAP_MIB = 80;
// long names make every line longer, so each body is larger than the server's heap
const DEVICE_PREFIX = 'imported-sensor-with-a-rather-long-name-for-size-';

/** A body generated as it is sent: the test never holds it in memory either. */
function generated(lines: number, format: 'ndjson' | 'csv', counted: (bytes: number) => void): Readable {
  async function* gen() {
    if (format === 'csv') yield 'device,ts,temperature,humidity,pressure\n';
    const chunk: string[] = [];
    for (let i = 0; i < lines; i++) {
      const device = `${DEVICE_PREFIX}${i % DEVICES}`;
      const ts = BASE_MS + Math.floor(i / DEVICES) * 1000;
      chunk.push(
        format === 'csv'
          ? `${device},${new Date(ts).toISOString()},${(i % 50) / 2},${i % 100},${1000 + (i % 40) / 4}\n`
          : `{"device":"${device}","ts":${ts},"metrics":{"temperature":${(i % 50) / 2},"humidity":${i % 100}}}\n`,
      );
      if (chunk.length === 5000) yield counting(chunk.splice(0).join(''));
    }
    if (chunk.length) yield counting(chunk.join(''));
  }
  const counting = (text: string) => (counted(Buffer.byteLength(text)), text);
  return Readable.from(gen(), { objectMode: false });
}

describe('streaming import (real server process)', () => {
  let db: TestDatabase;
  let server: ServerProcess;
  let key: string;
  let database: Database;

  before(async () => {
    db = await createTestDatabase();
    const config = loadConfig({}, { DATABASE_URL: db.url, LOG_LEVEL: 'silent' });
    database = new Database(db.url, config, createMetrics(), pino({ level: 'silent' }));
    key = (await createKey(database.api, 'importer', ['read', 'write'])).key;
    await ensurePartitionsBetween(database.api, BASE_MS * 1000, (BASE_MS + 20 * 86_400_000) * 1000);
    // The server gets a 80 MiB old-generation heap, smaller than any of the bodies below
    // (85-125 MB uncompressed, several times that as parsed rows): an import that held its
    // body or its rows in memory would die of heap exhaustion instead of answering 200.
    // That checks "constant memory" as behaviour, not as an RSS figure that varies with
    // how V8 sizes its heap on a given machine. No in-process job worker: the rollup job
    // would build rollups of each million readings alongside, on the same heap and cores.
    server = await startServer(db.url, { IMPORT_CONCURRENCY: '1', JOBS_IN_SERVE: 'false', NODE_OPTIONS: `--max-old-space-size=${HEAP_MIB}` });
  });
  after(async () => {
    assert.equal(await server.stop(), 0);
    await database.close();
    await db.drop();
  });

  async function post(body: Readable | string, type: string, gzip = false, as = key) {
    const res = await fetch(`${server.url}/v1/readings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${as}`, 'content-type': type, ...(gzip ? { 'content-encoding': 'gzip' } : {}) },
      body: typeof body === 'string' ? body : (Readable.toWeb(body) as ReadableStream),
      duplex: 'half',
    } as RequestInit);
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }
  const readingCount = async () => Number((await db.pool.query('select count(*)::int as n from readings')).rows[0].n);

  async function bigImport(format: 'ndjson' | 'csv', gzip: boolean) {
    await db.pool.query('truncate readings, latest');
    const lines = 1_000_000;
    let bodyBytes = 0;
    const body = generated(lines, format, (n) => (bodyBytes += n));
    const sent = gzip ? body.pipe(createGzip({ level: 1 })) : body;
    const res = await post(sent, format === 'csv' ? 'text/csv' : 'application/x-ndjson', gzip).catch((err: Error) => {
      throw new Error(`${err.message}; the server printed: ${server.output().slice(-2000)}`);
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.deepEqual({ readings: res.json.readings, values: res.json.values, devices: res.json.devices }, {
      readings: lines,
      values: lines * (format === 'csv' ? 3 : 2),
      devices: DEVICES,
    });
    assert.equal(await readingCount(), lines);
    assert.ok(bodyBytes > HEAP_MIB * 2 ** 20, `the body (${bodyBytes} bytes) must exceed the server's heap limit`);
    assert.equal(server.child.exitCode, null, 'the server is still running');
    const latest = await db.pool.query(
      `select l.metric, l.value from latest_values l join devices d on d.id = l.device_id where d.external_id = '${DEVICE_PREFIX}99' order by 1`,
    );
    assert.deepEqual(latest.rows, [
      { metric: 'humidity', value: 99 },
      ...(format === 'csv' ? [{ metric: 'pressure', value: 1009.75 }] : []),
      { metric: 'temperature', value: 24.5 },
    ]);
  }

  for (const format of ['ndjson', 'csv'] as const) {
    for (const gzip of [true, false]) {
      it(`imports 1,000,000 ${gzip ? 'gzip' : 'plain'} ${format} lines in constant memory`, () => bigImport(format, gzip));
    }
  }

  it('imports long-form CSV, merging consecutive rows of one reading', async () => {
    await db.pool.query('truncate readings, latest');
    const long = 'device,ts,metric,value\nlong-1,2026-10-02T00:00:00Z,a,1\nlong-1,2026-10-02T00:00:00Z,b,2\nlong-1,2026-10-02T00:01:00Z,a,3\n';
    const res = await post(long, 'text/csv');
    assert.deepEqual(res.json, { ...res.json, readings: 2, values: 3, devices: 1 });
    const rows = await db.pool.query(
      `select m.names, r.vals from readings r join metric_sets m on m.id = r.metric_set join devices d on d.id = r.device_id
        where d.external_id = 'long-1' order by r.ts`,
    );
    assert.deepEqual(rows.rows, [{ names: ['a', 'b'], vals: [1, 2] }, { names: ['a'], vals: [3] }]);
  });

  it('merges repeated device and ts within one import and with stored readings', async () => {
    const body = [
      '{"device":"rep-1","ts":"2026-10-03T00:00:00Z","metrics":{"a":1}}',
      '{"device":"rep-1","ts":"2026-10-03T00:01:00Z","metrics":{"a":2}}',
      '{"device":"rep-1","ts":"2026-10-03T00:00:00Z","metrics":{"b":3}}',
      '{"device":"rep-1","ts":"2026-10-03T00:00:00Z","metrics":{"a":4}}',
    ].join('\n');
    assert.equal((await post(body, 'application/x-ndjson')).status, 200);
    assert.equal((await post('{"device":"rep-1","ts":"2026-10-03T00:01:00Z","metrics":{"c":5}}\n', 'application/x-ndjson')).status, 200);
    const rows = await db.pool.query(
      `select m.names, r.vals from readings r join metric_sets m on m.id = r.metric_set join devices d on d.id = r.device_id
        where d.external_id = 'rep-1' order by r.ts`,
    );
    assert.deepEqual(rows.rows, [{ names: ['a', 'b'], vals: [4, 3] }, { names: ['a', 'c'], vals: [2, 5] }]);
  });

  it('is all or nothing: an error names the line and nothing is imported', async () => {
    const before = await readingCount();
    const devicesBefore = Number((await db.pool.query('select count(*)::int as n from devices')).rows[0].n);
    const lines = Array.from({ length: 12_000 }, (_, i) => `{"device":"aon-${i}","ts":${BASE_MS},"metrics":{"a":${i}}}`);
    lines[11_000] = '{"device":"aon-x","ts":"not a time","metrics":{"a":1}}';
    const res = await post(`${lines.join('\n')}\n`, 'application/x-ndjson');
    assert.equal(res.status, 422);
    assert.equal(res.json.line, 11_001);
    assert.match(String(res.json.detail), /^line 11001: /);
    assert.equal(await readingCount(), before);
    assert.equal(Number((await db.pool.query('select count(*)::int as n from devices')).rows[0].n), devicesBefore);

    const csv = await post('device,ts,a\nok-1,2026-10-01T00:00:00Z,1\nbad device,2026-10-01T00:00:00Z,2\n', 'text/csv');
    assert.equal(csv.status, 422);
    assert.equal(csv.json.line, 3);
  });

  it('answers an unknown device (auto-creation off) with 422 while the body is still streaming', async () => {
    const strict = (await createKey(database.api, 'import-strict', ['write'])).key;
    await db.pool.query(`update tenants set auto_create_devices = false where name = 'import-strict'`);
    const before = await readingCount();
    // The first batch already fails: the server answers, then drains the rest of the body.
    // Were it left unread, the connection would stay open and the server could not shut
    // down (the after hook checks that it exits 0).
    const res = await post(generated(300_000, 'ndjson', () => {}), 'application/x-ndjson', false, strict);
    assert.equal(res.status, 422, JSON.stringify(res.json));
    assert.equal(res.json.type, '/problems/unknown-device');
    assert.equal((res.json.devices as string[]).length, DEVICES);
    assert.equal(await readingCount(), before);
    assert.equal(Number((await db.pool.query(`select count(*)::int as n from devices d join tenants t on t.id = d.tenant_id where t.name = 'import-strict'`)).rows[0].n), 0);
    assert.equal(server.child.exitCode, null, 'the server is still running');
  });

  it('answers 503 with Retry-After when the import slots are taken', async () => {
    let release!: () => void;
    const slow = new Readable({ read() {} });
    slow.push('{"device":"slow-1","ts":1790000000000,"metrics":{"a":1}}\n');
    const first = post(slow, 'application/x-ndjson');
    await new Promise((r) => setTimeout(r, 300)); // let the first import take the only slot
    const res = await fetch(`${server.url}/v1/readings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-ndjson' },
      body: '{"device":"slow-2","metrics":{"a":1}}\n',
    });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '5');
    slow.push(null);
    release = () => {};
    release();
    assert.equal((await first).status, 200);
  });
});
