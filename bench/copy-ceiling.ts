/**
 * The ceiling of the bulk-ingest scenarios: raw COPY of the same kind of rows (3 values a
 * reading) into the same readings table, from this process, for the same time window.
 * No HTTP, no parsing, no validation: what PostgreSQL alone takes.
 */
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { formatUs } from '../src/lib/time.ts';
import type { LoadResult } from './lib/result.ts';

/** Rows per COPY (one transaction each) unless the caller caps it (smoke runs: short windows). */
const ROWS_PER_COPY = 50_000;

export async function runCopyCeiling(
  url: string,
  opts: {
    /** The tenant whose devices pulse writes in the same scenario: the rows go to the same devices. */
    tenant: string;
    durationMs: number;
    warmupMs: number;
    connections: number;
    valuesPerRequest: number;
    rowsPerCopy?: number;
    onPhase?: (p: 'measure' | 'stopped') => void;
  },
): Promise<LoadResult> {
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  // not every device of the database: the session scenario's devices would get readings
  // inside their sessions' windows, and their summaries would read them
  const devices = (
    await setup.query<{ id: string }>(`select d.id::text from devices d join tenants t on t.id = d.tenant_id where t.name = $1 order by d.id`, [opts.tenant])
  ).rows.map((r) => r.id);
  if (!devices.length) throw new Error(`copy ceiling: tenant '${opts.tenant}' has no devices`);
  const set = (
    await setup.query<{ id: number }>(
      `insert into metric_sets (names) values ('{humidity,pressure,temperature}') on conflict (names) do update set names = excluded.names returning id`,
    )
  ).rows[0]!.id;
  await setup.end();

  const perCopy = Math.max(1, Math.min(ROWS_PER_COPY, opts.rowsPerCopy ?? ROWS_PER_COPY));
  let nextUs = Date.now() * 1000;
  const start = performance.now();
  const measureFrom = start + opts.warmupMs;
  const measureTo = measureFrom + opts.durationMs;
  let rows = 0;
  let copies = 0;
  const latencies: number[] = [];
  let phase: 'warmup' | 'measure' | 'done' = 'warmup';

  const worker = async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      while (performance.now() < measureTo) {
        const baseUs = nextUs;
        nextUs += perCopy;
        const lines = function* () {
          for (let i = 0; i < perCopy; i += 1000) {
            let chunk = '';
            for (let j = i; j < Math.min(i + 1000, perCopy); j++) {
              const d = devices[j % devices.length];
              chunk += `${d}\t${formatUs(baseUs + j)}\t${set}\t{${(j % 97) / 4},${j % 100},${1000 + (j % 13)}}\n`;
            }
            yield chunk;
          }
        };
        const t0 = performance.now();
        await client.query('begin');
        await pipeline(Readable.from(lines()), client.query(copyStreams.from('copy readings (device_id, ts, metric_set, vals) from stdin')));
        await client.query('commit');
        const t1 = performance.now();
        if (phase === 'warmup' && t1 >= measureFrom) {
          phase = 'measure';
          opts.onPhase?.('measure');
        }
        if (t0 >= measureFrom && t1 <= measureTo) {
          rows += perCopy;
          copies++;
          latencies.push((t1 - t0) * 1000);
        }
      }
    } finally {
      await client.end();
    }
  };
  await Promise.all(Array.from({ length: opts.connections }, worker));
  opts.onPhase?.('stopped');
  const durationS = opts.durationMs / 1000;
  const valuesPerSecond = (rows * 3) / durationS;
  latencies.sort((a, b) => a - b);
  const q = (f: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * f))] ?? 0;
  // expressed per "request" of the scenario's size, so throughput × valuesPerRequest = values/s
  const rps = valuesPerSecond / opts.valuesPerRequest;
  return {
    driver: 'pulse-load',
    requests: Math.round(rps * durationS),
    durationS,
    rps,
    latencyUs: { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: latencies[latencies.length - 1] ?? 0, mean: latencies.reduce((a, b) => a + b, 0) / (latencies.length || 1) },
    status: { '2xx': Math.round(rps * durationS) },
    errors: 0,
    timeouts: 0,
    errorCodes: {},
    non2xx: 0,
    loadgenCpuPct: 0,
    bytesIn: copies,
  };
}
