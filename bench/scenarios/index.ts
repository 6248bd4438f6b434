/**
 * The bench scenarios. A scenario is a request kind (bench/scenarios/requests.ts), the
 * ceiling it is compared with, and the systems it applies to. Adding one is an entry
 * here plus, if needed, a request kind.
 */
import type { Unit } from '../lib/report-model.ts';
import type { RequestArgs } from './requests.ts';

export interface ScenarioDef {
  name: string;
  title: string;
  unit: Unit;
  kind: RequestArgs['kind'];
  /** The ceiling: a bare route returning a body of the same size, 204 for writes, or raw COPY of the same rows. */
  ceiling: 'json' | 'write' | 'copy';
  valuesPerRequest?: number;
  /** Readings per request (bulk kinds). */
  perRequest?: number;
  /** Load-generator connections, when the scenario fixes them (else --connections). */
  connections?: number;
  /** pulse ablation variants (bench/systems.ts) that this scenario compares. */
  variants?: string[];
  /** false: the "before" baseline has no such endpoint (line protocol, streaming import). */
  before?: boolean;
  /** Peers (bench/peers) that answer this scenario's question too. */
  peers?: string[];
  /** Data prepared before every run (bench/scenarios/sessions.ts). */
  setup?: 'sessions';
}

export const SCENARIOS: ScenarioDef[] = [
  { name: 'device-latest', title: 'Latest values of one device (Zipf devices)', unit: 'req/s', kind: 'latest', ceiling: 'json', variants: ['pulse (cache off)'] },
  { name: 'dashboard', title: 'Dashboard: newest readings of active devices (/v1/readings/latest)', unit: 'req/s', kind: 'dashboard', ceiling: 'json', variants: ['pulse (cache off)', 'pulse (compression off)'] },
  { name: 'range-page', title: 'Range page: newest 100 values of a metric', unit: 'req/s', kind: 'range', ceiling: 'json', variants: ['pulse (compression off)'] },
  { name: 'stats-30d', title: '30-day hourly stats of one device (closed time: cached)', unit: 'req/s', kind: 'stats', ceiling: 'json', variants: ['pulse (cache off)', 'pulse (rollups and cache off)'], peers: ['influxdb'] },
  { name: 'fleet-stats-30d', title: 'Fleet-wide 30-day hourly stats (all active devices; closed time: cached)', unit: 'req/s', kind: 'fleet-stats', ceiling: 'json', variants: ['pulse (cache off)'], before: false },
  // latency targets (p50 of one query) are measured one request at a time: at 50 connections a p50 is queueing
  { name: 'dashboard-1c', title: 'Dashboard, one request at a time (latency; cache off = uncached)', unit: 'req/s', kind: 'dashboard', ceiling: 'json', connections: 1, variants: ['pulse (cache off)'], before: false },
  { name: 'stats-30d-1c', title: '30-day hourly stats of one device, one request at a time (latency)', unit: 'req/s', kind: 'stats', ceiling: 'json', connections: 1, variants: ['pulse (cache off)', 'pulse (rollups and cache off)'], before: false },
  { name: 'fleet-stats-30d-1c', title: 'Fleet-wide 30-day hourly stats, one request at a time (latency)', unit: 'req/s', kind: 'fleet-stats', ceiling: 'json', connections: 1, variants: ['pulse (cache off)'], before: false },
  // before the write scenarios: the rollup refresh of what they write would otherwise compete with the summary worker
  { name: 'session-complete', title: 'Session completions (summary computed by the job worker), 50 connections', unit: 'req/s', kind: 'session-complete', ceiling: 'write', connections: 50, before: false, setup: 'sessions' },
  { name: 'ingest-single', title: 'Single-reading ingest (3 metrics per request), 50 connections', unit: 'req/s', kind: 'ingest', ceiling: 'write', connections: 50, variants: ['pulse (batch size 1)', 'pulse (flush wait 5 ms)', 'pulse (2 flushes at a time)', 'pulse (4 flushes at a time)'], peers: ['influxdb'] },
  { name: 'ingest-single-200', title: 'Single-reading ingest (3 metrics per request), 200 connections', unit: 'req/s', kind: 'ingest', ceiling: 'write', connections: 200, variants: ['pulse (batch size 1)', 'pulse (flush wait 5 ms)', 'pulse (2 flushes at a time)', 'pulse (4 flushes at a time)'] },
  { name: 'ingest-batch', title: 'Batched JSON ingest: 1,000 readings × 3 metrics per request, 4 connections', unit: 'values/s', kind: 'ingest-batch', ceiling: 'copy', perRequest: 1000, valuesPerRequest: 3000, connections: 4 },
  { name: 'line-protocol', title: 'InfluxDB line protocol: 5,000 lines × 3 fields per request, 4 connections', unit: 'values/s', kind: 'line-protocol', ceiling: 'copy', perRequest: 5000, valuesPerRequest: 15_000, connections: 4, before: false, peers: ['influxdb'] },
  { name: 'ndjson-import', title: 'NDJSON bulk import: 50,000 readings × 3 metrics per request, 2 connections', unit: 'values/s', kind: 'ndjson', ceiling: 'copy', perRequest: 50_000, valuesPerRequest: 150_000, connections: 2, before: false },
  { name: 'mixed', title: 'Mixed: 80 % reads / 20 % writes, Zipf devices', unit: 'req/s', kind: 'mixed', ceiling: 'json' },
];

export function selectScenarios(names: string[] | null): ScenarioDef[] {
  if (!names) return SCENARIOS;
  const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown scenario(s) ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  return SCENARIOS.filter((s) => names.includes(s.name));
}
