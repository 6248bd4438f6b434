import { DEVICE_ID_PATTERN, METRIC_PATTERN } from '../../http/schemas.ts';
import type { ReadingInput } from './types.ts';

const DEVICE_RE = new RegExp(DEVICE_ID_PATTERN);
const METRIC_RE = new RegExp(METRIC_PATTERN);
export const MAX_METRICS_PER_READING = 256;
const MIN_TS_US = 0; // 1970-01-01: earlier stamps are a device clock that never got set

export interface ReadingLimits {
  nowUs: number;
  maxFutureSkewUs: number;
}

export interface ReadingError {
  index: number;
  detail: string;
}

/** The checks every ingest path applies to a parsed reading; null when it is acceptable. */
export function checkReading(r: ReadingInput, limits: ReadingLimits): string | null {
  if (typeof r.device !== 'string' || !DEVICE_RE.test(r.device)) {
    return 'device must be 1–128 characters of A–Z a–z 0–9 . _ : @ - (starting with a letter or digit)';
  }
  if (!Number.isSafeInteger(r.ts) || r.ts < MIN_TS_US) return 'ts is not a valid timestamp after 1970-01-01';
  if (r.ts > limits.nowUs + limits.maxFutureSkewUs) {
    return `ts is more than ${limits.maxFutureSkewUs / 1e6} s in the future (MAX_FUTURE_SKEW_S)`;
  }
  let n = 0;
  for (const name in r.metrics) {
    if (!METRIC_RE.test(name)) return `metric name '${name.slice(0, 140)}' must be 1–128 characters of A–Z a–z 0–9 _ . : / -`;
    // a JS object key with special meaning: it would vanish from responses
    if (name === '__proto__') return "metric name '__proto__' is reserved";
    const v = r.metrics[name];
    if (typeof v !== 'number' || !Number.isFinite(v)) return `metric '${name}' must be a finite number`;
    n++;
  }
  if (n === 0) return 'metrics must contain at least one value';
  if (n > MAX_METRICS_PER_READING) return `at most ${MAX_METRICS_PER_READING} metrics per reading`;
  return null;
}

/** Checks every reading; returns up to `max` errors (empty: all good). */
export function checkReadings(readings: ReadingInput[], limits: ReadingLimits, max = 20): ReadingError[] {
  const errors: ReadingError[] = [];
  for (let i = 0; i < readings.length && errors.length < max; i++) {
    const detail = checkReading(readings[i]!, limits);
    if (detail) errors.push({ index: i, detail });
  }
  return errors;
}
