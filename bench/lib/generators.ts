/**
 * Reusable request generators for bench/lib/load.ts, and the seeded samplers that
 * scenario generators build on (Zipf device ids). A generator module exports
 * `make(args) => (i) => request`; these are referenced by export name, e.g.
 * `{ module: 'bench/lib/generators.ts', export: 'fixed', args: { method: 'GET', path: '/x' } }`.
 */
import type { GeneratedRequest, RequestFn } from './load.ts';

export const GENERATORS_MODULE = new URL(import.meta.url).pathname;

function checkRequest(r: unknown, where: string): GeneratedRequest {
  if (typeof r !== 'object' || r === null) throw new TypeError(`${where}: request must be an object`);
  const o = r as Record<string, unknown>;
  if (typeof o.method !== 'string' || typeof o.path !== 'string' || !o.path.startsWith('/')) {
    throw new TypeError(`${where}: request needs method and an absolute path`);
  }
  const req: GeneratedRequest = { method: o.method.toUpperCase(), path: o.path };
  if (o.headers !== undefined) req.headers = o.headers as Record<string, string>;
  // Encode once: the generator runs per request and must stay cheap.
  if (o.body !== undefined) req.body = typeof o.body === 'string' ? Buffer.from(o.body) : Buffer.from(JSON.stringify(o.body));
  return req;
}

/** The same request every time. args: { method, path, headers?, body? (string or JSON value) }. */
export function fixed(args: unknown): RequestFn {
  const req = checkRequest(args, 'fixed');
  return () => req;
}

/** Round-robin over a list. args: { requests: [{ method, path, headers?, body? }, ...] }. */
export function cycle(args: unknown): RequestFn {
  const list = (args as { requests?: unknown } | null)?.requests;
  if (!Array.isArray(list) || list.length === 0) throw new TypeError('cycle: args.requests must be a non-empty array');
  const reqs = list.map((r, i) => checkRequest(r, `cycle[${i}]`));
  return (i) => reqs[i % reqs.length] as GeneratedRequest;
}

/** mulberry32: a small, fast, seeded PRNG in [0, 1). Same seed, same sequence. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Zipf(s) over ranks 0..n-1 (rank 0 most frequent), by binary search over the
 * precomputed CDF: O(n) memory once, O(log n) per draw.
 */
export function zipfSampler(n: number, s: number, random: () => number): () => number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError('zipf: n must be an integer >= 1');
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / (k + 1) ** s;
    cdf[k] = sum;
  }
  for (let k = 0; k < n; k++) cdf[k] = (cdf[k] as number) / sum;
  return () => {
    const u = random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}
