/**
 * The systems under test, each a separate process: the ceiling (bare Fastify), pulse as
 * configured, pulse with one technique switched off through its real config knob, the
 * "before" baseline, and peers (bench/peers: InfluxDB). Adding an ablation is one entry in PULSE_VARIANTS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

export interface RunningSystem {
  name: string;
  kind: 'ceiling' | 'pulse' | 'before' | 'peer';
  port: number;
  pid: number;
  /** Statements run so far, from the system's own counter (null: unknown). */
  queries(): Promise<number | null>;
  /** Cache lookups so far and how many were hits (null: no cache, or unknown). */
  cache?(): Promise<{ lookups: number; hits: number } | null>;
  stop(): Promise<void>;
}

/**
 * pulse variants: name → env overrides through the real config knobs. 'pulse' runs in
 * every scenario; an ablation runs in the scenarios that list it (bench/scenarios).
 */
export const PULSE_VARIANTS: Record<string, Record<string, string>> = {
  pulse: {},
  // no group commit: every write request is its own transaction
  'pulse (batch size 1)': { INGEST_BATCH_MAX_VALUES: '1', INGEST_FLUSH_CONCURRENCY: '6' },
  // the batcher's other settings, as measured to choose the defaults (docs/decisions/0002)
  'pulse (flush wait 5 ms)': { INGEST_BATCH_MAX_WAIT_MS: '5' },
  'pulse (2 flushes at a time)': { INGEST_FLUSH_CONCURRENCY: '2' },
  'pulse (4 flushes at a time)': { INGEST_FLUSH_CONCURRENCY: '4' },
  // responses over 1 KiB are sent uncompressed (the load generator asks for gzip/br on reads)
  'pulse (compression off)': { COMPRESS_RESPONSES: 'false' },
  // every read goes to the database: the cold cache
  'pulse (cache off)': { CACHE_ENABLED: 'false' },
  // stats aggregate raw readings (and are not cached: the raw aggregation itself is measured)
  'pulse (rollups and cache off)': { ROLLUPS_ENABLED: 'false', CACHE_ENABLED: 'false' },
};

function waitForLine(child: ChildProcess, pattern: RegExp, what: string, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs} ms:\n${out}`)), timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (pattern.test(out)) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d) => (out += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code} before it was ready:\n${out}`));
    });
  });
}

async function waitReady(url: string, child: ChildProcess, what: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not yet listening
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not ready within ${timeoutMs} ms`);
}

async function stopChild(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await once(child, 'exit');
  clearTimeout(timer);
}

const TSX = ['--import', 'tsx'];
/** PULSE_BENCH_PROFILE=<dir>: pulse and the ceiling write a V8 CPU profile there when they stop. */
const profileArgs = () => (process.env.PULSE_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PULSE_BENCH_PROFILE}`] : []);

export async function startCeiling(port: number): Promise<RunningSystem> {
  const child = spawn(process.execPath, [...profileArgs(), ...TSX, 'bench/lib/ceiling.ts', '--port', String(port)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  await waitForLine(child, /listening \d+/, 'ceiling');
  return { name: 'ceiling', kind: 'ceiling', port, pid: child.pid!, queries: async () => 0, stop: () => stopChild(child) };
}

/** Sum of pulse's named statements (transaction control excluded) from /metrics. */
export async function pulseQueryCount(port: number): Promise<number | null> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) {
    const m = /^pulse_db_query_duration_seconds_count\{([^}]*)\} (\d+)/.exec(line);
    if (m && !/query="(begin|commit)"/.test(m[1]!)) n += Number(m[2]);
  }
  return n;
}

/** Cache lookups and hits (l1, l2, stale) from /metrics. */
export async function pulseCacheCounts(port: number): Promise<{ lookups: number; hits: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let lookups = 0;
  let hits = 0;
  for (const line of text.split('\n')) {
    const m = /^pulse_cache_lookups_total\{([^}]*)\} (\d+)/.exec(line);
    if (!m) continue;
    lookups += Number(m[2]);
    if (!/result="miss"/.test(m[1]!)) hits += Number(m[2]);
  }
  return { lookups, hits };
}

export async function startPulse(
  name: string,
  port: number,
  databaseUrl: string,
  workers: number,
  env: Record<string, string>,
): Promise<RunningSystem> {
  const child = spawn(process.execPath, [...profileArgs(), 'bin/pulse.mjs', 'serve', '--workers', String(workers)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    // line protocol writes the metrics every other scenario reads (temperature, …), not `env.temperature`
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), LOG_LEVEL: 'warn', MIGRATE_ON_START: 'false', LP_METRIC_NAMING: 'field', ...env },
  });
  child.stdout!.resume();
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  await waitReady(`http://127.0.0.1:${port}/readyz`, child, `${name}: ${stderr}`);
  return {
    name,
    kind: 'pulse',
    port,
    pid: child.pid!,
    // with several workers /metrics answers for one of them: the count would be partial
    queries: async () => (workers === 1 ? pulseQueryCount(port) : null),
    cache: async () => (workers === 1 && env.CACHE_ENABLED !== 'false' ? pulseCacheCounts(port) : null),
    stop: () => stopChild(child),
  };
}

export async function startBefore(port: number, databaseUrl: string): Promise<RunningSystem> {
  const child = spawn(
    process.execPath,
    [...TSX, 'bench/baseline/server.ts', '--port', String(port), '--database-url', databaseUrl],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  await waitForLine(child, /listening \d+/, 'before (baseline)');
  return {
    name: 'before',
    kind: 'before',
    port,
    pid: child.pid!,
    queries: async () => ((await (await fetch(`http://127.0.0.1:${port}/__stats`)).json()) as { queries: number }).queries,
    stop: () => stopChild(child),
  };
}
