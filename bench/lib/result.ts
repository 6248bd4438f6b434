/** The one result shape every load driver (bench/lib/load.ts) returns. */

export interface LatencyUs {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export interface LoadResult {
  /** Which driver produced it: 'pulse-load' (undici + hdr) or 'wrk'. */
  driver: 'pulse-load' | 'wrk';
  /** Responses received in the measured window (any status). Errors are not included. */
  requests: number;
  /** Length of the measured window, seconds. */
  durationS: number;
  /** requests / durationS. */
  rps: number;
  /** Latency of the measured responses, microseconds. */
  latencyUs: LatencyUs;
  /**
   * Responses by status class ('2xx', '3xx', '4xx', '5xx'; '1xx'/'other' if ever seen).
   * Sums to `requests`. wrk only knows "status >= 400": it reports '2xx' (which then
   * includes 3xx) and '4xx/5xx'.
   */
  status: Record<string, number>;
  /** Requests that got no response: socket errors, timeouts. */
  errors: number;
  /** The subset of `errors` that were timeouts. */
  timeouts: number;
  /** errors by code (ECONNRESET, UND_ERR_HEADERS_TIMEOUT, wrk's read/write/connect...). */
  errorCodes: Record<string, number>;
  /** Responses whose status is not 2xx (wrk: status >= 400). */
  non2xx: number;
  /** CPU used by the load generator over the measured window, % of one core. */
  loadgenCpuPct: number;
  /** Response bytes received in the measured window (bodies; wrk counts headers too). */
  bytesIn: number;
}

export function emptyStatus(): Record<string, number> {
  return { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 };
}

export function statusClass(code: number): string {
  return code >= 100 && code < 600 ? `${Math.floor(code / 100)}xx` : 'other';
}
