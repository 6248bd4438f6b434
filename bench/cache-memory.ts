/**
 * `node --import tsx bench/cache-memory.ts [--l1-mib 64] [--seconds 60] [--heap-mib N]`: does a `pulse serve`
 * stay within its L1 bound (issue #5) when the cacheable key space is many times larger?
 * Starts pulse (one process, no Redis, CACHE_L1_MAX_BYTES = --l1-mib) on the seeded bench
 * database (read only), measures its RSS after a warm-up over 10 keys (phase A: the fixed
 * overhead), then walks a key space whose answers total many times the bound (phase B:
 * mostly 30-day hourly stats over closed time, plus device records, latest values, device
 * lists and dashboards), 8 requests in flight, asking for gzip/br. RSS is sampled every
 * 100 ms; /metrics is read at the end of each phase. Prints RSS, L1 and compressed bytes,
 * capacity evictions, requests/s and a verdict: peak RSS <= baseline + L1 bound +
 * compressed bound + SLACK_MIB, and the RSS slope over the last third of phase B.
 * Uses DATABASE_URL's server, or the bench's embedded one (run `pulse bench` once).
 */
import { parseArgs } from 'node:util';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import zlib from 'node:zlib';
import pg from 'pg';
import pino from 'pino';
import { Pool } from 'undici';
import { loadConfig } from '../src/config.ts';
import { Database } from '../src/infra/db.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { createKey } from '../src/modules/keys/service.ts';
import { startEmbeddedPostgres } from '../src/infra/embedded-postgres.ts';
import { seededRandom } from './lib/generators.ts';
import { readProcMem } from './lib/procstat.ts';
import { startPulse } from './systems.ts';

const { values } = parseArgs({
  options: {
    'l1-mib': { type: 'string', default: '64' },
    seconds: { type: 'string', default: '60' },
    concurrency: { type: 'string', default: '8' },
    // V8's old-space limit for pulse (--max-old-space-size), e.g. L1 + compressed + 128
    'heap-mib': { type: 'string' },
  },
});
const MiB = 2 ** 20;
const l1Bytes = Math.round(Number(values['l1-mib']) * MiB);
const COMPRESSED_BYTES = 16 * MiB; // CACHE_COMPRESSED_MAX_BYTES's default, left as it is
/** Headroom for V8 (young generation, heap growth before a major GC) and allocator fragmentation. */
const SLACK_MIB = 64;
/** A last-third slope above this counts as still rising. */
const RISING_MIB_PER_MIN = 4;
const PHASE_A_S = 10;
const totalS = Number(values.seconds);
const concurrency = Number(values.concurrency);
if (!(totalS > PHASE_A_S + 5) || !(l1Bytes >= MiB) || !(concurrency >= 1)) {
  process.stderr.write(`--seconds must exceed ${PHASE_A_S + 5}, --l1-mib be >= 1, --concurrency >= 1\n`);
  process.exit(2);
}

const BENCH_DB = 'pulse_bench_default';
const EMBEDDED_URL = 'postgres://postgres:postgres@127.0.0.1:54331/postgres';

/** DATABASE_URL's server; else the bench's embedded one, reused when already up (someone's `pulse bench`), started otherwise. */
async function adminUrl(): Promise<{ url: string; stop: (() => Promise<void>) | null }> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, stop: null };
  const probe = new pg.Client({ connectionString: EMBEDDED_URL, connectionTimeoutMillis: 1000 });
  try {
    await probe.connect();
    await probe.end();
    return { url: EMBEDDED_URL, stop: null };
  } catch {
    const server = await startEmbeddedPostgres('.pulse/bench-pg', 54331, pino({ level: 'warn' }));
    return { url: server.url, stop: server.stop };
  }
}

const admin = await adminUrl();
const c = new pg.Client({ connectionString: admin.url });
await c.connect();
const exists = (await c.query('select 1 from pg_database where datname = $1', [BENCH_DB])).rowCount;
await c.end();
if (!exists) {
  process.stderr.write(`no database ${BENCH_DB} on ${new URL(admin.url).host}: run \`pulse bench\` once to seed it\n`);
  await admin.stop?.();
  process.exit(1);
}
const url = new URL(admin.url);
url.pathname = `/${BENCH_DB}`;
const dbUrl = url.toString();

const bench = new pg.Client({ connectionString: dbUrl });
await bench.connect();
const seed = (await bench.query<{ v: { spec: { devices: number; metrics: string[] }; startUs: number; endUs: number } }>(
  "select v from pulse_bench_meta where k = 'seed'",
)).rows[0]!.v;
const database = new Database(dbUrl, loadConfig({}, { DATABASE_URL: dbUrl, LOG_LEVEL: 'silent' }), createMetrics(), pino({ level: 'silent' }));
const apiKey = await createKey(database.api, 'bench', ['read'], 'cache-memory');
await database.close();

// ---- requests ----------------------------------------------------------------------------------
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const DEVICES = seed.spec.devices;
const METRICS = seed.spec.metrics;
// closed time: the newest window ends on the hour, over an hour (STATS_CLOSED_US) before now and before the data's end
const newestToMs = Math.floor(Math.min(seed.endUs / 1000, Date.now() - 2 * HOUR_MS) / HOUR_MS) * HOUR_MS;
const iso = (ms: number) => new Date(ms).toISOString();
const device = (n: number) => `sensor-${(n % DEVICES) + 1}`;

/** Stats key n: device-major, then metric, then a window ending n / (devices x metrics) hours earlier. */
function statsPath(n: number): string {
  const perWindow = DEVICES * METRICS.length;
  const toMs = newestToMs - Math.floor(n / perWindow) * HOUR_MS;
  const metric = METRICS[Math.floor(n / DEVICES) % METRICS.length];
  return `/v1/devices/${device(n)}/stats?metric=${metric}&bucket=1h&from=${iso(toMs - 30 * DAY_MS)}&to=${iso(toMs)}`;
}

const random = seededRandom(5);
const pick = (n: number) => Math.floor(random() * n);
let nextStats = 0;
const recentStats: string[] = [];
/** Phase B's mix: mostly new stats keys (80% of stats), a few repeats, and the other cacheable kinds over their own key spaces. */
function phaseBPath(): string {
  const r = random();
  if (r < 0.64) {
    const p = statsPath(nextStats++);
    recentStats.push(p);
    if (recentStats.length > 200) recentStats.shift();
    return p;
  }
  if (r < 0.8) return recentStats.length ? recentStats[pick(recentStats.length)]! : statsPath(0);
  if (r < 0.86) return `/v1/devices/${device(pick(DEVICES))}`;
  if (r < 0.92) return `/v1/devices/${device(pick(DEVICES))}/latest`;
  if (r < 0.97) return `/v1/devices?limit=${1 + pick(1000)}&status=${['active', 'inactive'][pick(2)]}`;
  return `/v1/readings/latest?status=${['active', 'any'][pick(2)]}&since=${1 + pick(48)}h&limit=${1 + pick(1000)}`;
}
const phaseAPath = () => `/v1/devices/${device(pick(10))}/latest`;

// ---- measurement ---------------------------------------------------------------------------------
const snapshotDir = process.env.PULSE_HEAP_SNAPSHOT ? resolve(process.env.PULSE_HEAP_SNAPSHOT) : null;
if (snapshotDir) mkdirSync(snapshotDir, { recursive: true });
const port = 18_980 + Math.floor(Math.random() * 9);
const pulse = await startPulse('pulse', port, dbUrl, 1, {
  JOBS_IN_SERVE: 'false',
  CACHE_L1_MAX_BYTES: String(l1Bytes),
  CACHE_COMPRESSED_MAX_BYTES: String(COMPRESSED_BYTES),
  REDIS_URL: '',
  // PULSE_HEAP_SNAPSHOT=<dir>: after phase B, a heap snapshot (it runs a full GC first) is written there
  NODE_OPTIONS: [
    process.env.NODE_OPTIONS ?? '',
    values['heap-mib'] ? `--max-old-space-size=${Number(values['heap-mib'])}` : '',
    snapshotDir ? `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshotDir}` : '',
  ].join(' ').trim(),
});
process.stdout.write(`pulse pid ${pulse.pid} on :${port}, V8 old space ${values['heap-mib'] ? `${values['heap-mib']} MiB` : 'default'}, L1 ${values['l1-mib']} MiB, compressed ${COMPRESSED_BYTES / MiB} MiB, ${concurrency} in flight\n`);

const samples: { at: number; rss: number }[] = [];
const t0 = performance.now();
const sampler = setInterval(() => samples.push({ at: performance.now() - t0, rss: readProcMem(pulse.pid)?.rssBytes ?? 0 }), 100);

async function scrape(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  const add = (k: string, v: number) => out.set(k, (out.get(k) ?? 0) + v);
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) continue;
    add(m[1]!, Number(m[3]));
    if (m[1] === 'pulse_cache_evictions_total' && m[2]!.includes('reason="capacity"')) add('evictions_capacity', Number(m[3]));
    if (m[1] === 'nodejs_heap_space_size_used_bytes') add(`space_${/space="(\w+)"/.exec(m[2]!)![1]}`, Number(m[3]));
    if (m[1] === 'pulse_cache_lookups_total') add(`lookups_${/result="(\w+)"/.exec(m[2]!)![1]}`, Number(m[3]));
  }
  return out;
}

interface Phase {
  requests: number;
  statuses: Map<number, number>;
  wireBytes: number;
  /** Distinct paths answered and the sum of their uncompressed bodies: the key space touched. */
  distinct: Set<string>;
  distinctBytes: number;
  seconds: number;
  startAt: number;
  endAt: number;
}

const http = new Pool(`http://127.0.0.1:${port}`, { connections: concurrency, pipelining: 1 });
const headers = { authorization: `Bearer ${apiKey.key}`, 'accept-encoding': 'gzip, br' };

async function run(seconds: number, nextPath: () => string): Promise<Phase> {
  const phase: Phase = { requests: 0, statuses: new Map(), wireBytes: 0, distinct: new Set(), distinctBytes: 0, seconds: 0, startAt: performance.now() - t0, endAt: 0 };
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const loop = async () => {
    while (performance.now() < deadline) {
      const path = nextPath();
      const res = await http.request({ method: 'GET', path, headers });
      const body = Buffer.from(await res.body.arrayBuffer());
      phase.requests++;
      phase.statuses.set(res.statusCode, (phase.statuses.get(res.statusCode) ?? 0) + 1);
      phase.wireBytes += body.length;
      if (res.statusCode === 200 && !phase.distinct.has(path)) {
        phase.distinct.add(path);
        const enc = res.headers['content-encoding'];
        phase.distinctBytes += (enc === 'br' ? zlib.brotliDecompressSync(body) : enc === 'gzip' ? zlib.gunzipSync(body) : body).length;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  phase.seconds = (performance.now() - started) / 1000;
  phase.endAt = performance.now() - t0;
  return phase;
}

const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
const avg = (xs: { rss: number }[]) => xs.reduce((s, x) => s + x.rss, 0) / Math.max(1, xs.length);
/** Least-squares slope of RSS over time, MiB per minute. */
function slope(xs: { at: number; rss: number }[]): number {
  const n = xs.length;
  const mx = xs.reduce((s, x) => s + x.at, 0) / n;
  const my = avg(xs);
  let num = 0;
  let den = 0;
  for (const x of xs) {
    num += (x.at - mx) * (x.rss - my);
    den += (x.at - mx) ** 2;
  }
  return den > 0 ? ((num / den) * 60_000) / MiB : 0;
}
const describe = (name: string, p: Phase, m: Map<string, number>) => {
  const g = (k: string) => m.get(k) ?? 0;
  const lookups = ['l1', 'l2', 'miss', 'stale'].map((r) => `${r} ${g(`lookups_${r}`)}`).join(', ');
  return (
    `${name}: ${p.requests} requests in ${p.seconds.toFixed(1)} s (${(p.requests / p.seconds).toFixed(0)}/s), status ${JSON.stringify(Object.fromEntries(p.statuses))}, ` +
    `${mib(p.wireBytes)} on the wire; ${p.distinct.size} distinct keys, ${mib(p.distinctBytes)} of distinct answers (uncompressed)\n` +
    `  /metrics at its end: L1 ${mib(g('pulse_cache_l1_bytes'))}, compressed ${mib(g('pulse_cache_compressed_bytes'))}, capacity evictions ${g('evictions_capacity')}, ` +
    `lookups (cumulative) ${lookups}; V8 heap used ${mib(g('nodejs_heap_size_used_bytes'))} of ${mib(g('nodejs_heap_size_total_bytes'))}, external ${mib(g('nodejs_external_memory_bytes'))} ` +
    `(old space ${mib(g('space_old'))}, large objects ${mib(g('space_large_object'))}, new ${mib(g('space_new'))})\n`
  );
};

/** Signals pulse to write a heap snapshot (a full GC runs first), waits for the file, and reports memory after that GC. */
async function afterFullGc(dir: string): Promise<string> {
  const snapshots = () => readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot'));
  const before = new Set(snapshots());
  const started = performance.now();
  process.kill(pulse.pid, 'SIGUSR2');
  let file: string | undefined;
  let size = -1;
  while (performance.now() - started < 90_000) {
    await new Promise((r) => setTimeout(r, 1000));
    file ??= snapshots().find((f) => !before.has(f));
    if (!file) continue;
    const now = statSync(join(dir, file)).size;
    if (now === size && now > 0) break;
    size = now;
  }
  const m = await scrape();
  const g = (k: string) => m.get(k) ?? 0;
  return (
    `after a full GC (heap snapshot ${file ? join(dir, file) : 'NOT WRITTEN'}, ${mib(size)}, ${((performance.now() - started) / 1000).toFixed(0)} s): ` +
    `RSS ${mib(readProcMem(pulse.pid)?.rssBytes ?? 0)}, V8 heap used ${mib(g('nodejs_heap_size_used_bytes'))} of ${mib(g('nodejs_heap_size_total_bytes'))}, ` +
    `external ${mib(g('nodejs_external_memory_bytes'))} (old space ${mib(g('space_old'))}, large objects ${mib(g('space_large_object'))}), L1 ${mib(g('pulse_cache_l1_bytes'))}\n`
  );
}

let failed = false;
try {
  const a = await run(PHASE_A_S, phaseAPath);
  const ma = await scrape();
  const b = await run(totalS - PHASE_A_S, phaseBPath);
  const mb = await scrape();
  clearInterval(sampler);

  // baseline: phase A's second half (after warm-up)
  const inA = samples.filter((s) => s.at >= (a.startAt + a.endAt) / 2 && s.at <= a.endAt);
  const inB = samples.filter((s) => s.at > b.startAt && s.at <= b.endAt);
  const tenth = Math.max(1, Math.floor(inB.length / 10));
  const baseline = avg(inA);
  const peak = Math.max(...inB.map((s) => s.rss));
  const lastThird = inB.slice(-Math.max(2, Math.floor(inB.length / 3)));
  const rise = slope(lastThird);
  const limit = baseline + l1Bytes + COMPRESSED_BYTES + SLACK_MIB * MiB;
  const ok200 = [a, b].every((p) => p.statuses.size === 1 && p.statuses.has(200));
  const bounded = peak <= limit;
  const flat = rise <= RISING_MIB_PER_MIN;
  failed = !(ok200 && bounded && flat);
  const every5s: string[] = [];
  for (let t = b.startAt + 5000; t <= b.endAt + 50; t += 5000) every5s.push((avg(inB.filter((s) => s.at > t - 5000 && s.at <= t)) / MiB).toFixed(0));
  process.stdout.write(
    describe('phase A (10 latest keys)', a, ma) +
      describe('phase B (large key space)', b, mb) +
      `RSS: baseline (phase A, 2nd half) ${mib(baseline)}; phase B first tenth avg ${mib(avg(inB.slice(0, tenth)))}, last tenth avg ${mib(avg(inB.slice(-tenth)))}, peak ${mib(peak)}; ` +
      `RSS per 5 s of phase B (MiB): ${every5s.join(' ')}\n` +
      `L1 held above baseline: RSS last tenth - baseline = ${mib(avg(inB.slice(-tenth)) - baseline)} for ${mib(mb.get('pulse_cache_l1_bytes') ?? 0)} L1 + ${mib(mb.get('pulse_cache_compressed_bytes') ?? 0)} compressed\n` +
      `verdict: peak ${mib(peak)} ${bounded ? '<=' : '>'} baseline + L1 ${mib(l1Bytes)} + compressed ${mib(COMPRESSED_BYTES)} + slack ${SLACK_MIB} MiB = ${mib(limit)}: ${bounded ? 'BOUNDED' : 'OVER THE BOUND'}; ` +
      `last-third slope ${rise.toFixed(1)} MiB/min (${flat ? 'flat' : 'still rising'}, threshold ${RISING_MIB_PER_MIN}); all answers 200: ${ok200 ? 'yes' : 'NO'}\n`,
  );
  if (snapshotDir) process.stdout.write(await afterFullGc(snapshotDir));
} finally {
  clearInterval(sampler);
  await http.close();
  await pulse.stop();
  await bench.query('delete from api_keys where id = $1', [apiKey.id]);
  await bench.end();
  await admin.stop?.();
}
process.exit(failed ? 1 : 0);
