/**
 * Per-field aggregation over `--repeat` runs. Every numeric field (at any depth) is
 * aggregated on its own, so the "median result" may take its rps from one run and its
 * p99 from another: it describes the typical run, not one actual run. A count that
 * appears in some runs only (status classes, error codes) is 0 in the others.
 */
export type Aggregate = (values: number[]) => number;

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export const min: Aggregate = (values) => (values.length === 0 ? Number.NaN : Math.min(...values));
export const max: Aggregate = (values) => (values.length === 0 ? Number.NaN : Math.max(...values));

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function combine(values: unknown[], fn: Aggregate): unknown {
  const present = values.filter((v) => v !== undefined);
  if (present.length === 0) return undefined;
  if (present.every((v) => typeof v === 'number')) {
    return fn(values.map((v) => (typeof v === 'number' ? v : 0)));
  }
  if (present.every(isRecord)) {
    const keys = new Set<string>();
    for (const v of present) for (const k of Object.keys(v)) keys.add(k);
    const out: Record<string, unknown> = {};
    for (const k of keys) out[k] = combine(values.map((v) => (isRecord(v) ? v[k] : undefined)), fn);
    return out;
  }
  return present[0];
}

/** Applies `fn` to each numeric field across runs; other fields come from the first run. */
export function aggregate<T>(runs: readonly T[], fn: Aggregate): T {
  if (runs.length === 0) throw new RangeError('aggregate: no runs');
  return combine([...runs], fn) as T;
}

export interface RunSummary<T> {
  median: T;
  min: T;
  max: T;
  n: number;
}

export function summarizeRuns<T>(runs: readonly T[]): RunSummary<T> {
  return { median: aggregate(runs, median), min: aggregate(runs, min), max: aggregate(runs, max), n: runs.length };
}
