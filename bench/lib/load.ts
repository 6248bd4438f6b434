/**
 * Closed-loop HTTP load generator: `connections` sockets (undici Pool, pipelining 1),
 * one request in flight per socket, latency recorded in microseconds in an HDR
 * histogram. Runs in its own process (bench/lib/load-cli.ts) so its CPU is measured
 * apart from the server's and does not share an event loop with it.
 *
 * Window: [0, warmupMs) warm-up, nothing recorded; [warmupMs, warmupMs + durationMs)
 * measured. A response counts if its request started inside the measured window and
 * it completed before the window closed; requests still in flight when the window
 * closes are dropped (as wrk does). With `maxRequests` the run ends as soon as that
 * many measured requests have been issued and answered, if that comes first.
 *
 * Latency is service time per closed-loop request; it is not corrected for
 * coordinated omission (neither is wrk's).
 */
import { performance } from 'node:perf_hooks';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { Pool, type Dispatcher } from 'undici';
import { emptyStatus, statusClass, type LoadResult } from './result.ts';

export interface GeneratedRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

/** Called once per request with a run-wide counter (warm-up included), from 0. */
export type RequestFn = (i: number) => GeneratedRequest;
/** What a generator module exports (by default under the name `make`). */
export type MakeRequests = (args: unknown) => RequestFn;

export interface GeneratorRef {
  /** Module path (relative to the process cwd, or absolute) or file: URL. */
  module: string;
  /** Export name of the `make(args)` factory; default 'make'. */
  export?: string;
  /** Passed to the factory; must be JSON when the load runs in a child process. */
  args?: unknown;
}

export interface LoadSpec {
  /** Origin only, http://127.0.0.1:<port>. Anything else is refused. */
  url: string;
  connections: number;
  durationMs: number;
  warmupMs: number;
  maxRequests?: number;
  /** Per-request timeout (connect, headers, and between body chunks); default 10 s. */
  timeoutMs?: number;
  /**
   * Make each connection's next request while its current one is in flight. For bulk
   * bodies (megabytes, ~100 ms to make): otherwise a closed loop adds the generator's time
   * to every request, and the server idles meanwhile, as it would not behind a client
   * that streams a file.
   */
  prefetch?: boolean;
  requests: GeneratorRef;
}

export const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 10_000;

export class LoadSpecError extends Error {
  override name = 'LoadSpecError';
}

/** Accepts only `http://127.0.0.1[:port][/]`: the benchmark never leaves this machine. */
export function assertLoopbackOrigin(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new LoadSpecError(`url is not a URL: ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:') throw new LoadSpecError(`url must be http:, got ${parsed.protocol}`);
  if (parsed.hostname !== '127.0.0.1') throw new LoadSpecError(`url host must be 127.0.0.1, got ${parsed.hostname}`);
  if (parsed.username !== '' || parsed.password !== '') throw new LoadSpecError('url must not carry credentials');
  if (parsed.pathname !== '/' || parsed.search !== '' || parsed.hash !== '') {
    throw new LoadSpecError('url must be an origin; paths come from the request generator');
  }
  return parsed.origin;
}

function positiveInt(value: unknown, name: string, { allowZero = false } = {}): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (allowZero ? 0 : 1)) {
    throw new LoadSpecError(`${name} must be an integer ${allowZero ? '>= 0' : '>= 1'}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Checks an untrusted (JSON) spec; returns it typed or throws LoadSpecError. */
export function validateSpec(input: unknown): LoadSpec {
  if (typeof input !== 'object' || input === null) throw new LoadSpecError('spec must be an object');
  const o = input as Record<string, unknown>;
  if (typeof o.url !== 'string') throw new LoadSpecError('url must be a string');
  assertLoopbackOrigin(o.url);
  const connections = positiveInt(o.connections, 'connections');
  if (connections > MAX_CONNECTIONS) throw new LoadSpecError(`connections must be <= ${MAX_CONNECTIONS}`);
  const spec: LoadSpec = {
    url: o.url,
    connections,
    durationMs: positiveInt(o.durationMs, 'durationMs'),
    warmupMs: positiveInt(o.warmupMs ?? 0, 'warmupMs', { allowZero: true }),
    requests: validateRef(o.requests),
  };
  if (o.maxRequests !== undefined) spec.maxRequests = positiveInt(o.maxRequests, 'maxRequests');
  if (o.timeoutMs !== undefined) spec.timeoutMs = positiveInt(o.timeoutMs, 'timeoutMs');
  if (o.prefetch !== undefined) {
    if (typeof o.prefetch !== 'boolean') throw new LoadSpecError('prefetch must be a boolean');
    spec.prefetch = o.prefetch;
  }
  return spec;
}

function validateRef(input: unknown): GeneratorRef {
  if (typeof input !== 'object' || input === null) throw new LoadSpecError('requests must be {module, export?, args?}');
  const r = input as Record<string, unknown>;
  if (typeof r.module !== 'string' || r.module === '') throw new LoadSpecError('requests.module must be a path');
  if (r.export !== undefined && typeof r.export !== 'string') throw new LoadSpecError('requests.export must be a string');
  const ref: GeneratorRef = { module: r.module, args: r.args };
  if (typeof r.export === 'string') ref.export = r.export;
  return ref;
}

/** file: URL of a generator module; relative paths resolve against `baseDir`. */
export function generatorModuleUrl(module: string, baseDir = process.cwd()): string {
  if (module.startsWith('file:')) return module;
  return pathToFileURL(isAbsolute(module) ? module : resolve(baseDir, module)).href;
}

export async function loadGenerator(ref: GeneratorRef, baseDir?: string): Promise<RequestFn> {
  const mod = (await import(generatorModuleUrl(ref.module, baseDir))) as Record<string, unknown>;
  const name = ref.export ?? 'make';
  const make = mod[name];
  if (typeof make !== 'function') throw new LoadSpecError(`${ref.module} has no function export ${name}`);
  const fn = (make as MakeRequests)(ref.args);
  if (typeof fn !== 'function') throw new LoadSpecError(`${ref.module}#${name}(args) did not return a function`);
  return fn;
}

type Phase = 'warmup' | 'measure' | 'stopped';

/** One closed-loop client; it is also the undici handler of its own in-flight request. */
class Connection implements Dispatcher.DispatchHandlers {
  startedAt = 0;
  statusCode = 0;
  bytes = 0;
  measured = false;
  /** The next request, made while this one was in flight (LoadSpec.prefetch). */
  prepared: GeneratedRequest | undefined;
  constructor(private readonly run: Run) {}
  onConnect(): void {}
  onHeaders(statusCode: number): boolean {
    this.statusCode = statusCode;
    return true;
  }
  onData(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    return true;
  }
  onComplete(): void {
    this.run.completed(this);
  }
  onError(err: Error): void {
    this.run.failed(this, err);
  }
}

function errorCode(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : err.name;
}

const TIMEOUT_CODES = new Set([
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ETIMEDOUT',
]);

class Run {
  private phase: Phase = 'warmup';
  private counter = 0;
  private measuredIssued = 0;
  private inFlight = 0;
  private measureStart = 0;
  private cpuStart: NodeJS.CpuUsage = process.cpuUsage();
  private timers: NodeJS.Timeout[] = [];
  private readonly histogram = hdr.build({
    bitBucketSize: 32,
    autoResize: true,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  private latencySumUs = 0;
  private latencyMaxUs = 0;
  private requests = 0;
  private bytesIn = 0;
  private errors = 0;
  private timeouts = 0;
  private readonly errorCodes: Record<string, number> = {};
  private readonly status = emptyStatus();
  private settle!: { resolve: (r: LoadResult) => void; reject: (e: unknown) => void };
  readonly done: Promise<LoadResult>;

  constructor(
    private readonly spec: LoadSpec,
    private readonly pool: Pool,
    private readonly next: RequestFn,
    private readonly onPhase: ((phase: 'measure' | 'stopped') => void) | undefined,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
  }

  start(): void {
    if (this.spec.warmupMs > 0) this.timers.push(setTimeout(() => this.startMeasuring(), this.spec.warmupMs));
    else this.startMeasuring();
    for (let c = 0; c < this.spec.connections; c++) this.issue(new Connection(this));
  }

  private startMeasuring(): void {
    this.phase = 'measure';
    this.measureStart = performance.now();
    this.cpuStart = process.cpuUsage();
    this.timers.push(setTimeout(() => this.finish(), this.spec.durationMs));
    this.onPhase?.('measure');
  }

  private issue(conn: Connection): void {
    if (this.phase === 'stopped') return;
    const measuring = this.phase === 'measure';
    if (measuring && this.spec.maxRequests !== undefined && this.measuredIssued >= this.spec.maxRequests) {
      if (this.inFlight === 0) this.finish();
      return;
    }
    let req: GeneratedRequest;
    try {
      req = conn.prepared ?? this.next(this.counter++);
    } catch (err) {
      this.abort(err);
      return;
    }
    conn.prepared = undefined;
    if (measuring) this.measuredIssued++;
    conn.measured = measuring;
    conn.statusCode = 0;
    conn.bytes = 0;
    this.inFlight++;
    conn.startedAt = performance.now();
    const opts: Dispatcher.DispatchOptions = { method: req.method as Dispatcher.HttpMethod, path: req.path };
    if (req.headers !== undefined) opts.headers = req.headers;
    if (req.body !== undefined) opts.body = req.body;
    this.pool.dispatch(opts, conn);
    // after the dispatch has had its turn to write
    if (this.spec.prefetch) setImmediate(() => this.prepare(conn));
  }

  private prepare(conn: Connection): void {
    if (this.phase === 'stopped' || conn.prepared) return;
    try {
      conn.prepared = this.next(this.counter++);
    } catch (err) {
      this.abort(err);
    }
  }

  completed(conn: Connection): void {
    if (this.phase === 'stopped') return;
    this.inFlight--;
    if (conn.measured) {
      const us = (performance.now() - conn.startedAt) * 1000;
      this.histogram.recordValue(Math.max(1, Math.round(us)));
      this.latencySumUs += us;
      if (us > this.latencyMaxUs) this.latencyMaxUs = us;
      this.requests++;
      this.bytesIn += conn.bytes;
      const cls = statusClass(conn.statusCode);
      this.status[cls] = (this.status[cls] ?? 0) + 1;
    }
    // Let undici finish its own bookkeeping for this response before we dispatch again.
    process.nextTick(() => this.issue(conn));
  }

  failed(conn: Connection, err: Error): void {
    if (this.phase === 'stopped') return;
    this.inFlight--;
    if (conn.measured) {
      this.errors++;
      const code = errorCode(err);
      this.errorCodes[code] = (this.errorCodes[code] ?? 0) + 1;
      if (TIMEOUT_CODES.has(code)) this.timeouts++;
    }
    // A refused connection fails fast; a short pause keeps a dead target from
    // turning the generator into a busy loop that steals the server's core.
    setTimeout(() => this.issue(conn), 1);
  }

  private abort(err: unknown): void {
    if (this.phase === 'stopped') return;
    this.phase = 'stopped';
    for (const t of this.timers) clearTimeout(t);
    this.pool.destroy().catch(() => {});
    this.settle.reject(err);
  }

  private finish(): void {
    if (this.phase === 'stopped') return;
    this.phase = 'stopped';
    const end = performance.now();
    const cpu = process.cpuUsage(this.cpuStart);
    for (const t of this.timers) clearTimeout(t);
    this.onPhase?.('stopped');
    const durationS = Math.max(1e-9, (end - this.measureStart) / 1000);
    const n = this.requests;
    const maxUs = Math.max(1, Math.ceil(this.latencyMaxUs));
    // HDR percentiles are the top of their bucket (3 significant digits) and can
    // land a hair above the true maximum; clamp so p50 <= p90 <= p99 <= max holds.
    const pct = (p: number): number => (n > 0 ? Math.min(this.histogram.getValueAtPercentile(p), maxUs) : 0);
    const result: LoadResult = {
      driver: 'pulse-load',
      requests: n,
      durationS: round(durationS, 6),
      rps: round(n / durationS, 2),
      latencyUs: {
        p50: pct(50),
        p90: pct(90),
        p99: pct(99),
        max: n > 0 ? maxUs : 0,
        mean: n > 0 ? round(this.latencySumUs / n, 1) : 0,
      },
      status: this.status,
      errors: this.errors,
      timeouts: this.timeouts,
      errorCodes: this.errorCodes,
      non2xx: n - (this.status['2xx'] ?? 0),
      loadgenCpuPct: round(((cpu.user + cpu.system) / 1000 / (durationS * 1000)) * 100, 1),
      bytesIn: this.bytesIn,
    };
    // In-flight requests are abandoned: destroying the pool errors them, and we ignore that.
    this.pool.destroy().then(
      () => this.settle.resolve(result),
      () => this.settle.resolve(result),
    );
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export interface RunLoadOptions {
  /** Use this generator instead of importing spec.requests (in-process callers, tests). */
  generator?: RequestFn;
  /** Where relative generator module paths resolve from; default process.cwd(). */
  baseDir?: string;
  /**
   * Called when the measured window opens and closes, so a caller can sample the
   * server's CPU over exactly that window.
   */
  onPhase?: (phase: 'measure' | 'stopped') => void;
}

/** Runs one bounded load test in this process. */
export async function runLoad(specInput: LoadSpec, options: RunLoadOptions = {}): Promise<LoadResult> {
  const spec = validateSpec(specInput);
  const origin = assertLoopbackOrigin(spec.url);
  const next = options.generator ?? (await loadGenerator(spec.requests, options.baseDir));
  const timeout = spec.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const pool = new Pool(origin, {
    connections: spec.connections,
    pipelining: 1,
    headersTimeout: timeout,
    bodyTimeout: timeout,
    connect: { timeout },
  });
  const run = new Run(spec, pool, next, options.onPhase);
  run.start();
  return run.done;
}

/** Upper bound on how long a run may take before its process should be killed. */
export function hardDeadlineMs(spec: Pick<LoadSpec, 'durationMs' | 'warmupMs' | 'timeoutMs'>): number {
  return spec.warmupMs + spec.durationMs + 2 * (spec.timeoutMs ?? DEFAULT_TIMEOUT_MS) + 10_000;
}
