/** The results document of `pulse bench` and the figures derived from it. */
import type { LoadResult } from './result.ts';

export interface Machine {
  cpus: number;
  model: string;
  memGiB: number;
  node: string;
  pg: string;
}

export interface SystemExtra {
  dbQueriesPerReq?: number;
  /** 0..1 */
  cacheHitRate?: number;
  /** % of one core (200 = two cores). */
  serverCpuPct?: number;
  peakRssBytes?: number;
  /** For 'values/s' scenarios: values carried by one request. */
  valuesPerRequest?: number;
  /** PostgreSQL backends' CPU, % of one core. */
  dbCpuPct?: number;
}

export type Unit = 'req/s' | 'values/s';

export interface SystemResult {
  /** 'ceiling' | 'pulse' | 'pulse (cache off)' | 'before' | 'influxdb' | ... */
  system: string;
  runs: LoadResult[];
  /** Per-field median over runs (bench/lib/stats.ts). */
  median: LoadResult;
  extra?: SystemExtra;
}

export interface ScenarioResult {
  name: string;
  title: string;
  unit: Unit;
  systems: SystemResult[];
  /** Scenario-specific figures (e.g. the summary lag of session completions). */
  notes?: string[];
}

export interface BenchResults {
  machine: Machine;
  command: string;
  startedAt: string;
  scenarios: ScenarioResult[];
  /** Which comparison the report opens with ("before vs after"). */
  headline?: { scenario: string; before: string; after: string };
}

export const CEILING = 'ceiling';

function valuesPerRequest(scenario: ScenarioResult, system: SystemResult): number {
  if (scenario.unit !== 'values/s') return 1;
  return (
    system.extra?.valuesPerRequest ??
    scenario.systems.find((s) => s.extra?.valuesPerRequest !== undefined)?.extra?.valuesPerRequest ??
    1
  );
}

/** Throughput in the scenario's unit, for one run or the median. */
export function throughputOf(scenario: ScenarioResult, system: SystemResult, result: LoadResult = system.median): number {
  return result.rps * valuesPerRequest(scenario, system);
}

export function throughputRange(scenario: ScenarioResult, system: SystemResult): { min: number; max: number } {
  const values = system.runs.map((r) => throughputOf(scenario, system, r));
  const median = throughputOf(scenario, system);
  return values.length === 0 ? { min: median, max: median } : { min: Math.min(...values), max: Math.max(...values) };
}

/** Fraction (0..) of the scenario's ceiling throughput, or null without a ceiling. */
export function fractionOfCeiling(scenario: ScenarioResult, system: SystemResult): number | null {
  const ceiling = scenario.systems.find((s) => s.system === CEILING);
  if (ceiling === undefined) return null;
  const c = throughputOf(scenario, ceiling);
  return c > 0 ? throughputOf(scenario, system) / c : null;
}

/** Requests that got no response, over all runs: errors / (responses + errors). */
export function errorRate(system: SystemResult): number {
  const runs = system.runs.length > 0 ? system.runs : [system.median];
  let errors = 0;
  let attempts = 0;
  for (const r of runs) {
    errors += r.errors;
    attempts += r.requests + r.errors;
  }
  return attempts > 0 ? errors / attempts : 0;
}

/** Responses that were not 2xx, over all runs. */
export function non2xxRate(system: SystemResult): number {
  const runs = system.runs.length > 0 ? system.runs : [system.median];
  let bad = 0;
  let all = 0;
  for (const r of runs) {
    bad += r.non2xx;
    all += r.requests;
  }
  return all > 0 ? bad / all : 0;
}

/** Runs (1-based) that had socket errors or timeouts. */
export function runsWithErrors(system: SystemResult): number[] {
  return system.runs.flatMap((r, i) => (r.errors > 0 ? [i + 1] : []));
}

// ---- formatting -------------------------------------------------------------------

export const DASH = '—';

/** 1234567.8 → "1,234,568" (no locale dependence). */
export function formatInt(x: number): string {
  const s = Math.round(x).toString();
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Microseconds → milliseconds with precision that fits the magnitude. */
export function formatMs(us: number): string {
  const ms = us / 1000;
  if (ms < 1) return ms.toFixed(3);
  if (ms < 10) return ms.toFixed(2);
  if (ms < 100) return ms.toFixed(1);
  return formatInt(ms);
}

export function formatPct(fraction: number, digits = 1): string {
  const pct = fraction * 100;
  if (pct !== 0 && Math.abs(pct) < 10 ** -digits) return `<${10 ** -digits}`;
  return pct.toFixed(digits);
}

export function formatMiB(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(0);
}

export function formatNumber(x: number, digits = 2): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

export function optional<T>(value: T | undefined, fmt: (v: T) => string): string {
  return value === undefined ? DASH : fmt(value);
}
