/**
 * `pulse bench`: prepares its own database (seeded once, reused by later runs), starts
 * every system under test as its own process, drives each scenario from a separate
 * load-generator process, and writes report.md, report.json and chart.svg.
 */
import { cpus, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from '../src/config.ts';
import { Database } from '../src/infra/db.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { migrate } from '../src/infra/migrate.ts';
import { startEmbeddedPostgres } from '../src/infra/embedded-postgres.ts';
import { createKey } from '../src/modules/keys/service.ts';
import { FILL_LATEST, fillLatestParams, seed } from '../src/tools/seed.ts';
import { loadBaselineFromPulse } from './baseline/load.ts';
import { BASELINE_APP } from './baseline/server.ts';
import { runCopyCeiling } from './copy-ceiling.ts';
import { spawnLoad } from './lib/spawn-load.ts';
import { startSampling, samplePostgres, type Sampler } from './lib/procstat.ts';
import { renderHeadline, renderScenarioTable, writeReport, type BenchResults, type ScenarioResult, type SystemResult } from './lib/report.ts';
import { summarizeRuns } from './lib/stats.ts';
import type { LoadResult } from './lib/result.ts';
import { selectScenarios, type ScenarioDef } from './scenarios/index.ts';
import { SESSION_DEVICES } from './scenarios/session-ids.ts';
import { openSessions, prepareSessionData, summaryLag } from './scenarios/sessions.ts';
import type { RequestArgs } from './scenarios/requests.ts';
import { findInfluxd, startInfluxdb } from './peers/influxdb.ts';
import { PULSE_VARIANTS, startBefore, startCeiling, startPulse, type RunningSystem } from './systems.ts';

export const SIZES = {
  tiny: { devices: 10, days: 2, intervalS: 3600 },
  small: { devices: 100, days: 7, intervalS: 300 },
  default: { devices: 1000, days: 30, intervalS: 300 },
} as const;
export type Size = keyof typeof SIZES;

export interface BenchOptions {
  scenarios: string[] | null;
  systems: string[] | null;
  durationMs: number;
  warmupMs: number;
  connections: number;
  workers: number;
  repeat: number;
  size: Size;
  out: string;
  command: string;
  quiet?: boolean;
  /** Server to create the bench database on; default DATABASE_URL, else an embedded one. */
  databaseUrl?: string;
  /** Drop the bench database at the end (tests). */
  dropDatabase?: boolean;
  /** Caps every scenario's connections (smoke tests on a shared database server). */
  maxConnections?: number;
  /** Caps the readings per request of bulk scenarios (smoke tests: the "before" is slow). */
  maxPerRequest?: number;
}

const METRICS = ['temperature', 'humidity', 'pressure'];
export const TENANT = 'bench';
const REQUESTS_MODULE = new URL('./scenarios/requests.ts', import.meta.url).pathname;

function withDb(url: string, name: string) {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A connection, waiting while the server is out of connection slots (the "before" uses many). */
async function connect(url: string): Promise<pg.Client> {
  for (let attempt = 0; ; attempt++) {
    const c = new pg.Client({ connectionString: url });
    try {
      await c.connect();
      return c;
    } catch (err) {
      if (attempt >= 300 || !/too many clients|remaining connection slots/.test((err as Error).message)) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function sql<T extends pg.QueryResultRow>(url: string, text: string, params: unknown[] = []) {
  const c = await connect(url);
  try {
    return (await c.query<T>(text, params)).rows;
  } finally {
    await c.end();
  }
}

/** The bench database: created by the bench (and marked so), seeded once per size. */
async function prepareDatabase(adminUrl: string, size: Size, withBaseline: boolean, withSessions: boolean, say: (s: string) => void) {
  const name = `pulse_bench_${size}`;
  const url = withDb(adminUrl, name);
  const exists = (await sql(adminUrl, 'select 1 from pg_database where datname = $1', [name])).length > 0;
  if (!exists) await sql(adminUrl, `create database ${name}`);
  else {
    const marked = await sql(url, `select to_regclass('pulse_bench_meta') is not null as ok`);
    if (!marked[0]?.ok) throw new Error(`database ${name} exists but was not created by pulse bench; drop it or pick another server`);
  }
  await migrate(url);
  await sql(url, 'create table if not exists pulse_bench_meta (k text primary key, v jsonb not null)');
  const spec = { ...SIZES[size], metrics: METRICS };
  const meta = await sql<{ v: { spec: unknown; startUs: number; endUs: number } }>(url, `select v from pulse_bench_meta where k = 'seed'`);
  const config = loadConfig({}, { DATABASE_URL: url, DB_STATEMENT_TIMEOUT_MS: 3_600_000, LOG_LEVEL: 'silent' });
  const database = new Database(url, config, createMetrics(), pino({ level: 'silent' }));
  try {
    let window = meta[0]?.v;
    // jsonb does not keep key order: compare canonically
    const canonical = (o: unknown) => JSON.stringify(o, Object.keys((o ?? {}) as object).sort());
    if (!window || canonical(window.spec) !== canonical(spec)) {
      say(`seeding ${name}: ${spec.devices} devices × ${spec.days} days × ${spec.intervalS} s × ${METRICS.length} metrics`);
      const started = Date.now();
      const r = await seed(database, { tenant: TENANT, ...SIZES[size], metrics: METRICS }, (p) =>
        say(`  seed ${p.phase} ${p.done}/${p.total} — ${p.rows.toLocaleString('en')} values`),
      );
      say(`  seeded ${r.rows.toLocaleString('en')} values in ${((Date.now() - started) / 1000).toFixed(0)} s`);
      window = { spec, startUs: r.startUs, endUs: r.endUs };
      await sql(url, `insert into pulse_bench_meta values ('seed', $1) on conflict (k) do update set v = excluded.v`, [window]);
      await sql(url, `delete from pulse_bench_meta where k = 'baseline'`);
    }
    const key = (await createKey(database.api, TENANT, ['read', 'write'])).key;
    let sessionKey = '';
    if (withSessions) {
      say('preparing the session-completion data');
      sessionKey = await prepareSessionData(url, database, SESSION_DEVICES[size]);
    }
    const baseline = await sql(url, `select 1 from pulse_bench_meta where k = 'baseline'`);
    if (!withBaseline) {
      // the baseline tables are loaded when a run includes the "before"
    } else if (!baseline.length) {
      say('loading the same data into the baseline ("before") tables');
      await loadBaselineFromPulse(url, TENANT, key);
      await sql(url, `insert into pulse_bench_meta values ('baseline', 'true') on conflict do nothing`);
    } else {
      await sql(url, `insert into baseline_keys (key, tenant) values ($1, $2)`, [key, TENANT]);
    }
    await clearBenchWrites(url, window, say);
    return { url, key, sessionKey, startUs: window.startUs, endUs: window.endUs, devices: spec.devices };
  } finally {
    await database.close();
  }
}

/**
 * Waits (at most 2 min) until a peer uses under 5 % of a core: InfluxDB compacts what a
 * write scenario gave it for a minute or more afterwards, on the cores the next
 * scenario measures.
 */
async function untilIdle(system: RunningSystem, say: (s: string) => void) {
  const started = Date.now();
  for (;;) {
    const s = startSampling([system.pid], 250, { includeDescendants: true });
    await new Promise((r) => setTimeout(r, 2_000));
    const busy = s.stop().cpuPct;
    if (busy < 5) break;
    if (Date.now() - started > 120_000) {
      say(`${system.name} still uses ${busy} % of a core; going on`);
      return;
    }
  }
  const waited = (Date.now() - started) / 1000;
  if (waited > 3) say(`waited ${waited.toFixed(0)} s for ${system.name} to go idle`);
}

/** Scenarios that write readings (the COPY ceiling of the bulk ones too). */
const WRITING_KINDS = new Set<ScenarioDef['kind']>(['ingest', 'ingest-batch', 'line-protocol', 'ndjson', 'mixed']);

/**
 * Removes the readings that bench runs wrote: everything after the seed's end on the bench
 * tenant's devices (the session scenario's devices are another tenant's, placed per run).
 * Run at the start and after each writing scenario, so that every scenario meets the
 * seeded database, not the tens of millions of rows earlier runs left in today's partition
 * (an ingest scenario with its COPY ceiling writes ~10M; they made later scenarios and
 * runs slower, and the autovacuum they set off ran during measurements).
 * `latest` is restored to the seed's as well: the line-protocol scenario's metrics
 * (`env.temperature`, …) are other names, and rows of them left behind doubled every later
 * dashboard's answer (600 latest values instead of 300, ~2x its time).
 */
export async function clearBenchWrites(url: string, window: { startUs: number; endUs: number }, say: (s: string) => void) {
  const { startUs, endUs } = window;
  const started = Date.now();
  const c = await connect(url);
  try {
    const seedEnd = new Date(endUs / 1000).toISOString();
    const r = await c.query(
      `delete from readings r using devices d join tenants t on t.id = d.tenant_id
        where r.device_id = d.id and t.name = $2 and r.ts > $1::timestamptz`,
      [seedEnd, TENANT],
    );
    const l = await c.query(
      `delete from latest l using devices d join tenants t on t.id = d.tenant_id
        where l.device_id = d.id and t.name = $2 and l.ts > $1::timestamptz`,
      [seedEnd, TENANT],
    );
    if (l.rowCount) {
      const { rows: tenant } = await c.query<{ id: string }>('select id from tenants where name = $1', [TENANT]);
      await c.query(FILL_LATEST, fillLatestParams(tenant[0]!.id, startUs, endUs));
      await c.query('vacuum (analyze) latest');
    }
    // the "before" tables exist once a run included it
    const { rows } = await c.query(`select to_regclass('baseline_readings') is not null as ok`);
    if (rows[0].ok) await c.query('delete from baseline_readings where ts > $1::timestamptz', [seedEnd]);
    if (!r.rowCount && !l.rowCount) return;
    if (r.rowCount) await c.query('vacuum (analyze) readings');
    say(`removed ${(r.rowCount ?? 0).toLocaleString('en')} readings and ${(l.rowCount ?? 0).toLocaleString('en')} devices' latest values of earlier bench writes in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await c.end();
  }
}

/** The postmaster's pid: the parent of this connection's backend (PostgreSQL on this machine). */
async function postmasterOf(url: string): Promise<number | null> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ pid: number }>('select pg_backend_pid() as pid');
    // read while the backend is alive: its parent is the postmaster
    const stat = readFileSync(`/proc/${rows[0]!.pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  } finally {
    await c.end();
  }
}

function machine(pgVersion: string) {
  const c = cpus();
  return {
    cpus: c.length,
    model: c[0]?.model.trim() ?? 'unknown',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.versions.node,
    pg: pgVersion,
  };
}

export async function runBench(opts: BenchOptions): Promise<{ results: BenchResults; dir: string }> {
  const say = (s: string) => {
    if (!opts.quiet) process.stderr.write(`${s}\n`);
  };
  const scenarios = selectScenarios(opts.scenarios);
  let adminUrl = opts.databaseUrl ?? loadConfig().DATABASE_URL;
  let stopEmbedded: (() => Promise<void>) | null = null;
  if (!adminUrl) {
    say('starting the embedded PostgreSQL for the bench (.pulse/bench-pg)');
    const server = await startEmbeddedPostgres('.pulse/bench-pg', 54331, pino({ level: 'warn' }));
    adminUrl = server.url;
    stopEmbedded = server.stop;
  }
  const running: RunningSystem[] = [];
  let benchDb: string | null = null;
  try {
    const wanted = (name: string) => !opts.systems || opts.systems.includes(name);
    const db = await prepareDatabase(adminUrl, opts.size, wanted('before'), scenarios.some((s) => s.setup === 'sessions'), say);
    benchDb = db.url;
    const pgVersion = (await sql<{ v: string }>(db.url, `select current_setting('server_version') as v`))[0]!.v;
    const postmaster = await postmasterOf(db.url);

    let port = 18_100 + Math.floor(Math.random() * 800) * 10;
    say('starting the systems under test');
    if (wanted('ceiling')) running.push(await startCeiling(port++));
    for (const [name, variantEnv] of Object.entries(PULSE_VARIANTS)) {
      // one job worker (rollups, summaries) on the machine: pulse's; the ablations run none
      const jobs: Record<string, string> = name === 'pulse' ? {} : { JOBS_IN_SERVE: 'false' };
      if (wanted(name)) running.push(await startPulse(name, port++, db.url, opts.workers, { ...jobs, ...variantEnv }));
    }
    if (wanted('before')) running.push(await startBefore(port++, db.url));
    if (scenarios.some((s) => s.peers?.includes('influxdb')) && wanted('influxdb')) {
      const influxd = findInfluxd();
      const seedKey = JSON.stringify({ size: opts.size, startUs: db.startUs, endUs: db.endUs, devices: db.devices });
      if (influxd) {
        running.push(await startInfluxdb(influxd, (port += 2), opts.size, seedKey, db.url, say));
        await untilIdle(running[running.length - 1]!, say); // compacting what it was loaded with
      }
      else if (opts.systems) throw new Error('--systems influxdb: no influxd on PATH (Debian: apt-get install influxdb)');
      else say('InfluxDB left out: no influxd on PATH (Debian: apt-get install influxdb)');
    }

    const results: ScenarioResult[] = [];
    for (const scenario of scenarios) {
      results.push(await runScenario(scenario, running, db, postmaster, opts, say));
      if (WRITING_KINDS.has(scenario.kind)) await clearBenchWrites(db.url, db, say);
      for (const peer of running.filter((s) => s.kind === 'peer')) await untilIdle(peer, say);
      say(`\n${renderScenarioTable(results[results.length - 1]!)}\n`);
    }
    const out: BenchResults = {
      machine: machine(pgVersion),
      command: opts.command,
      startedAt: new Date().toISOString(),
      scenarios: results,
      headline: results.some((s) => s.name === 'mixed')
        ? { scenario: 'mixed', before: 'before', after: 'pulse' }
        : results[0] ? { scenario: results[0].name, before: 'before', after: 'pulse' } : undefined,
    };
    const written = await writeReport(out, opts.out);
    const h = out.headline && results.find((s) => s.name === out.headline!.scenario);
    const before = h?.systems.find((s) => s.system === 'before');
    const after = h?.systems.find((s) => s.system === 'pulse');
    if (h && before && after) say(`\nBefore vs after — ${h.title}\n\n${renderHeadline(before, after, { scenario: h, format: 'terminal' })}\n`);
    say(`report: ${written.markdown}\n        ${written.json}\n        ${written.svg}`);
    return { results: out, dir: opts.out };
  } finally {
    for (const s of running.reverse()) await s.stop().catch(() => {});
    if (opts.dropDatabase && benchDb) await sql(adminUrl, `drop database if exists ${new URL(benchDb).pathname.slice(1)} with (force)`);
    if (stopEmbedded) await stopEmbedded();
  }
}

/**
 * Between runs: the "before" leaves queries running in PostgreSQL after its clients gave
 * up (a closed HTTP request does not cancel them). Cancel them, and wait until the
 * database is idle, so no run pays for the previous one.
 */
async function quiesce(url: string) {
  const c = await connect(url);
  try {
    await c.query(
      `select pg_cancel_backend(pid) from pg_stat_activity
        where datname = current_database() and application_name = $1 and state <> 'idle'`,
      [BASELINE_APP],
    );
    for (let i = 0; i < 300; i++) {
      const { rows } = await c.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and state = 'active'`,
      );
      if (rows[0]!.n === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await c.end();
  }
}

async function responseBytes(system: RunningSystem, path: string, key: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${system.port}${path}`, { headers: { authorization: `Bearer ${key}` } });
  return (await res.arrayBuffer()).byteLength;
}

async function runScenario(
  scenario: ScenarioDef,
  running: RunningSystem[],
  db: { url: string; key: string; sessionKey: string; startUs: number; endUs: number; devices: number },
  postmaster: number | null,
  opts: BenchOptions,
  say: (s: string) => void,
): Promise<ScenarioResult> {
  const key = scenario.setup === 'sessions' ? db.sessionKey : db.key;
  const base: RequestArgs = { kind: scenario.kind, key, devices: db.devices, startUs: db.startUs, endUs: db.endUs, sessions: SESSION_DEVICES[opts.size] };
  const notes: string[] = [];
  // the ceiling returns a body the size of pulse's answer to the same request
  const pulse = running.find((s) => s.kind === 'pulse');
  let bytes = 211;
  if (scenario.ceiling === 'json' && pulse) {
    const window = `metric=temperature&bucket=1h&from=${new Date(db.startUs / 1000).toISOString()}&to=${new Date(db.endUs / 1000).toISOString()}`;
    const probe = {
      latest: '/v1/devices/sensor-1/latest',
      dashboard: '/v1/readings/latest?status=active&since=1d&limit=100',
      range: '/v1/devices/sensor-1/readings?metric=temperature&limit=100',
      stats: `/v1/devices/sensor-1/stats?${window}`,
      'fleet-stats': `/v1/stats?${window}&status=active`,
    } as Record<string, string>;
    if (probe[scenario.kind]) bytes = await responseBytes(pulse, probe[scenario.kind]!, db.key);
  }
  const runs = new Map<string, { loads: LoadResult[]; queries: number[]; hitRates: number[]; cpu: number[]; rss: number[]; dbCpu: number[] }>();
  const connections = Math.min(scenario.connections ?? opts.connections, opts.maxConnections ?? Infinity);
  const perRequest = scenario.perRequest && Math.min(scenario.perRequest, opts.maxPerRequest ?? Infinity);
  const valuesPerRequest = scenario.valuesPerRequest && perRequest ? (scenario.valuesPerRequest / scenario.perRequest!) * perRequest : scenario.valuesPerRequest;
  // pulse runs everywhere, an ablation only where the scenario compares it; the COPY
  // ceiling replaces the HTTP ceiling for bulk ingest
  const systems = running.filter(
    (s) =>
      (s.kind !== 'pulse' || s.name === 'pulse' || scenario.variants?.includes(s.name)) &&
      !(s.kind === 'ceiling' && scenario.ceiling === 'copy') &&
      !(s.kind === 'before' && scenario.before === false) &&
      (s.kind !== 'peer' || !!scenario.peers?.includes(s.name)),
  );
  const copyCeiling = scenario.ceiling === 'copy' && running.some((s) => s.kind === 'ceiling');
  const entryOf = (name: string) => {
    const e = runs.get(name) ?? { loads: [], queries: [], hitRates: [], cpu: [], rss: [], dbCpu: [] };
    runs.set(name, e);
    return e;
  };
  for (let r = 0; r < opts.repeat; r++) {
    if (copyCeiling) {
      say(`${scenario.name}: raw COPY ceiling run ${r + 1}/${opts.repeat}`);
      let database: Sampler | null = null;
      const load = await runCopyCeiling(db.url, {
        tenant: TENANT,
        durationMs: opts.durationMs,
        warmupMs: opts.warmupMs,
        connections: Math.min(connections, 2),
        valuesPerRequest: valuesPerRequest ?? 1,
        // smoke runs (1 s windows): COPYs as small as the requests, so some finish inside the window
        ...(opts.maxPerRequest ? { rowsPerCopy: opts.maxPerRequest } : {}),
        onPhase: (phase) => {
          if (phase === 'measure') database = postmaster ? samplePostgres(postmaster) : null;
          else {
            const d = (database as Sampler | null)?.stop();
            if (d) entryOf('ceiling (raw COPY)').dbCpu.push(d.cpuPct);
          }
        },
      });
      entryOf('ceiling (raw COPY)').loads.push(load);
    }
    for (const system of systems) {
      const args: RequestArgs =
        system.kind === 'ceiling'
          ? { ...base, kind: scenario.ceiling === 'json' ? 'ceiling-json' : 'ceiling-write', bytes, run: r }
          : { ...base, run: r, perRequest, ...(system.kind === 'peer' ? { peer: system.name as 'influxdb' } : {}) };
      say(`${scenario.name}: ${system.name} run ${r + 1}/${opts.repeat}`);
      if (scenario.setup === 'sessions') await openSessions(db.url);
      let q0: Promise<number | null> = Promise.resolve(null);
      let q1: Promise<number | null> = Promise.resolve(null);
      type CacheCounts = { lookups: number; hits: number } | null;
      let c0: Promise<CacheCounts> = Promise.resolve(null);
      let c1: Promise<CacheCounts> = Promise.resolve(null);
      let server: Sampler | null = null;
      let database: Sampler | null = null;
      const load = await spawnLoad(
        {
          url: `http://127.0.0.1:${system.port}`,
          connections,
          durationMs: opts.durationMs,
          warmupMs: opts.warmupMs,
          timeoutMs: 10_000,
          // bulk bodies are made while the previous request is in flight (LoadSpec.prefetch)
          prefetch: scenario.perRequest !== undefined,
          requests: { module: REQUESTS_MODULE, export: 'make', args },
        },
        {
          onPhase: (phase) => {
            if (phase === 'measure') {
              q0 = system.queries().catch(() => null);
              c0 = system.cache?.().catch(() => null) ?? Promise.resolve(null);
              server = startSampling([system.pid], 250, { includeDescendants: true });
              database = postmaster ? samplePostgres(postmaster) : null;
            } else {
              q1 = system.queries().catch(() => null);
              c1 = system.cache?.().catch(() => null) ?? Promise.resolve(null);
              const s = (server as Sampler | null)?.stop();
              const d = (database as Sampler | null)?.stop();
              const entry = entryOf(system.name);
              if (s) entry.cpu.push(s.cpuPct), entry.rss.push(s.peakRssBytes);
              if (d) entry.dbCpu.push(d.cpuPct);
            }
          },
        },
      );
      const [from, to, cacheFrom, cacheTo] = await Promise.all([q0, q1, c0, c1]);
      if (scenario.setup === 'sessions' && system.kind === 'pulse') {
        const lag = await summaryLag(db.url);
        notes.push(
          `${system.name}, run ${r + 1}: ${lag.completed.toLocaleString('en')} summaries; lag from completion to summary p50 ${lag.p50.toFixed(0)} ms, ` +
            `p99 ${lag.p99.toFixed(0)} ms, max ${lag.max.toFixed(0)} ms${lag.pending ? `; ${lag.pending} still pending after 120 s` : ''}`,
        );
      }
      await quiesce(db.url);
      const entry = entryOf(system.name);
      entry.loads.push(load);
      // statements counted over the measured window, per request answered in it
      if (from !== null && to !== null && load.requests > 0) entry.queries.push((to - from) / load.requests);
      if (cacheFrom && cacheTo && cacheTo.lookups > cacheFrom.lookups) {
        entry.hitRates.push((cacheTo.hits - cacheFrom.hits) / (cacheTo.lookups - cacheFrom.lookups));
      }
    }
  }
  const med = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : undefined);
  const named = [...(copyCeiling ? [{ name: 'ceiling (raw COPY)', kind: 'copy' }] : []), ...systems.map((s) => ({ name: s.name, kind: s.kind }))];
  const results: SystemResult[] = named.map((s) => {
    const e = runs.get(s.name)!;
    const summary = summarizeRuns(e.loads);
    return {
      system: s.kind === 'copy' ? 'ceiling' : s.name,
      runs: e.loads,
      median: summary.median,
      extra: {
        dbQueriesPerReq: s.kind === 'ceiling' || s.kind === 'copy' ? undefined : med(e.queries),
        cacheHitRate: med(e.hitRates),
        serverCpuPct: med(e.cpu),
        peakRssBytes: e.rss.length ? Math.max(...e.rss) : undefined,
        dbCpuPct: s.kind === 'ceiling' ? undefined : med(e.dbCpu),
        valuesPerRequest,
      },
    };
  });
  return { name: scenario.name, title: scenario.title, unit: scenario.unit, systems: results, ...(notes.length ? { notes } : {}) };
}
