/**
 * `node --import tsx bench/import-memory.ts [--gb 1]`: streams a generated NDJSON import of
 * about `--gb` GB (uncompressed) into a `pulse serve` on a scratch database of the bench
 * server, sampling the server's RSS every 100 ms. Prints RSS at the start of the import,
 * at its first and last tenth, and the peak: a streaming import keeps it flat however big
 * the body is. Uses DATABASE_URL's server, or the bench's embedded one (run `pulse bench` once).
 */
import { parseArgs } from 'node:util';
import { Readable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from '../src/config.ts';
import { Database } from '../src/infra/db.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { migrate } from '../src/infra/migrate.ts';
import { ensurePartitionsBetween } from '../src/infra/partitions.ts';
import { createKey } from '../src/modules/keys/service.ts';
import { startEmbeddedPostgres } from '../src/infra/embedded-postgres.ts';
import { readProcMem } from './lib/procstat.ts';
import { startPulse } from './systems.ts';

const { values } = parseArgs({ options: { gb: { type: 'string', default: '1' } } });
const targetBytes = Number(values.gb) * 1e9;

let admin = process.env.DATABASE_URL ?? '';
let stopEmbedded: (() => Promise<void>) | null = null;
if (!admin) {
  const server = await startEmbeddedPostgres('.pulse/bench-pg', 54331, pino({ level: 'warn' }));
  admin = server.url;
  stopEmbedded = server.stop;
}
const url = new URL(admin);
url.pathname = '/pulse_import_memory';
const dbUrl = url.toString();
const c = new pg.Client({ connectionString: admin });
await c.connect();
await c.query('drop database if exists pulse_import_memory with (force)');
await c.query('create database pulse_import_memory');
await migrate(dbUrl);

const BASE_MS = Date.UTC(2026, 0, 1);
const DEVICES = 1000;
const database = new Database(dbUrl, loadConfig({}, { DATABASE_URL: dbUrl, LOG_LEVEL: 'silent' }), createMetrics(), pino({ level: 'silent' }));
const key = (await createKey(database.api, 'import', ['read', 'write'])).key;
await ensurePartitionsBetween(database.api, BASE_MS * 1000, (BASE_MS + 40 * 86_400_000) * 1000);
await database.close();

const port = 18_990 + Math.floor(Math.random() * 9);
const pulse = await startPulse('pulse', port, dbUrl, 1, { JOBS_IN_SERVE: 'false' });
const samples: { at: number; bytes: number; rss: number }[] = [];
let sent = 0;
async function* body() {
  for (let i = 0; sent < targetBytes; ) {
    const lines: string[] = [];
    for (let j = 0; j < 5000; j++, i++) {
      const ts = BASE_MS + Math.floor(i / DEVICES) * 1000;
      lines.push(`{"device":"imp-${i % DEVICES}","ts":${ts},"metrics":{"temperature":${(i % 50) / 2},"humidity":${i % 100},"pressure":${1000 + (i % 40) / 4}}}`);
    }
    const chunk = `${lines.join('\n')}\n`;
    sent += chunk.length;
    yield chunk;
  }
}
const sampler = setInterval(() => samples.push({ at: performance.now(), bytes: sent, rss: readProcMem(pulse.pid)?.rssBytes ?? 0 }), 100);
const started = performance.now();
try {
  const res = await fetch(`http://127.0.0.1:${port}/v1/readings`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-ndjson' },
    body: Readable.toWeb(Readable.from(body())) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  const result = await res.json();
  clearInterval(sampler);
  const seconds = (performance.now() - started) / 1000;
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const tenth = Math.max(1, Math.floor(samples.length / 10));
  const avg = (xs: typeof samples) => xs.reduce((s, x) => s + x.rss, 0) / xs.length;
  process.stdout.write(
    `${res.status} ${JSON.stringify(result)}\n` +
      `${(sent / 1e9).toFixed(2)} GB in ${seconds.toFixed(0)} s (${((sent / 1e6) / seconds).toFixed(0)} MB/s); server RSS: ` +
      `first tenth avg ${mib(avg(samples.slice(0, tenth)))}, last tenth avg ${mib(avg(samples.slice(-tenth)))}, ` +
      `peak ${mib(Math.max(...samples.map((s) => s.rss)))}\n`,
  );
} finally {
  clearInterval(sampler);
  await pulse.stop();
  await c.query('drop database if exists pulse_import_memory with (force)');
  await c.end();
  if (stopEmbedded) await stopEmbedded();
}
