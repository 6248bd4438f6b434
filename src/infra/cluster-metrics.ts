import cluster from 'node:cluster';
import type { Logger } from 'pino';
import client from 'prom-client';

/**
 * /metrics for `pulse serve --workers N`. A scrape lands on any one worker, while each
 * worker's registry holds only that worker's counters. prom-client's cluster support
 * does the gathering and merging: the primary's `AggregatorRegistry.clusterMetrics()`
 * asks every worker for its registries over IPC and combines each metric by its
 * `aggregator` (sum unless the metric says otherwise: see metrics.ts). What is added
 * here is the other direction: the worker that got the scrape asks the primary to run
 * `clusterMetrics()` and waits, bounded, for the text.
 */

const ASK = 'pulse:cluster-metrics-ask';
const ANSWER = 'pulse:cluster-metrics-answer';
/** A worker's scrape gives up after this (prom-client's own gathering gives up after 5 s). */
export const CLUSTER_METRICS_TIMEOUT_MS = 2_000;

interface Ask {
  type: typeof ASK;
  id: number;
}
interface Answer {
  type: typeof ANSWER;
  id: number;
  text?: string;
  error?: string;
}

const isAsk = (m: unknown): m is Ask => (m as Ask | null)?.type === ASK && typeof (m as Ask).id === 'number';
const isAnswer = (m: unknown): m is Answer => (m as Answer | null)?.type === ANSWER && typeof (m as Answer).id === 'number';

/**
 * Primary: answer workers' asks with the whole cluster's metrics (or the error). Call
 * before forking. The primary has no registry of its own to add: every metric lives in
 * the workers.
 */
export function serveClusterMetrics(log: Logger): void {
  // constructing it installs prom-client's listener for the workers' replies
  const aggregator = new client.AggregatorRegistry<client.PrometheusContentType>();
  cluster.on('message', (worker, message: unknown) => {
    if (!isAsk(message)) return;
    aggregator.clusterMetrics().then(
      (text): Answer => ({ type: ANSWER, id: message.id, text }),
      (err: Error): Answer => {
        log.warn({ err }, 'cluster metrics: not every worker answered');
        return { type: ANSWER, id: message.id, error: err.message };
      },
    ).then((answer) => {
      // the asking worker may have exited meanwhile; without a callback a failed send
      // would be an unhandled 'error' event in the primary
      if (worker.isConnected()) worker.send(answer, undefined, () => {});
    });
  });
}

/**
 * Worker: from now on, answer the primary's gathering requests with `registry`, plus
 * `pulse_cluster_workers` (1 per worker, summed: how many workers the answer covers) and
 * each worker's start time by pid (prom-client leaves process_start_time_seconds out of
 * aggregates). Call as early as possible: until a worker answers, every scrape of the
 * cluster waits for it.
 */
export function joinClusterMetrics(registry: client.Registry): void {
  const own = new client.Registry();
  new client.Gauge({
    name: 'pulse_cluster_workers',
    help: 'HTTP worker processes whose metrics this answer aggregates (with --workers N; each reports 1, summed)',
    aggregator: 'sum',
    registers: [own],
  }).set(1);
  new client.Gauge({
    name: 'pulse_cluster_worker_start_time_seconds',
    help: 'Start time of each HTTP worker process by pid, in seconds since the epoch (with --workers N)',
    labelNames: ['pid'] as const,
    aggregator: 'sum',
    registers: [own],
  }).set({ pid: String(process.pid) }, Math.round(Date.now() / 1000 - process.uptime()));
  // prom-client installs its worker-side listener only in AggregatorRegistry's constructor
  new client.AggregatorRegistry<client.PrometheusContentType>();
  client.AggregatorRegistry.setRegistries([registry, own]);
}

/** The IPC channel to the primary: `process` in a cluster worker, a fake in tests. */
export interface PrimaryChannel {
  send(message: Ask, callback: (err: Error | null) => void): void;
  on(event: 'message', listener: (message: unknown) => void): void;
  off(event: 'message', listener: (message: unknown) => void): void;
}

const processChannel: PrimaryChannel = {
  send(message, callback) {
    if (!process.send) return callback(new Error('no IPC channel to a primary'));
    process.send(message, undefined, {}, callback);
  },
  on: (event, listener) => void process.on(event, listener),
  off: (event, listener) => void process.off(event, listener),
};

/**
 * Worker: asks the primary for the cluster's metrics. Each ask has an id, so concurrent
 * scrapes get their own answers and an answer arriving after its timeout is dropped.
 */
export class ClusterMetricsClient {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();
  private readonly onMessage = (message: unknown) => {
    if (!isAnswer(message)) return;
    const waiting = this.pending.get(message.id);
    if (!waiting) return; // timed out already
    this.pending.delete(message.id);
    if (message.error !== undefined || message.text === undefined) waiting.reject(new Error(message.error ?? 'empty answer'));
    else waiting.resolve(message.text);
  };

  constructor(
    private readonly channel: PrimaryChannel = processChannel,
    private readonly timeoutMs = CLUSTER_METRICS_TIMEOUT_MS,
  ) {
    channel.on('message', this.onMessage);
  }

  /** The cluster's metrics in the Prometheus text format; rejects on timeout or a failed gathering. */
  fetch(): Promise<string> {
    const id = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer from the cluster primary within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const settle = <T>(fn: (v: T) => void) => (v: T) => {
        clearTimeout(timer);
        fn(v);
      };
      this.pending.set(id, { resolve: settle(resolve), reject: settle(reject) });
      this.channel.send({ type: ASK, id }, (err) => {
        if (!err) return;
        this.pending.delete(id);
        settle(reject)(err);
      });
    });
  }

  /** Stops listening; asks still waiting fail. */
  close(): void {
    this.channel.off('message', this.onMessage);
    for (const waiting of this.pending.values()) waiting.reject(new Error('closed'));
    this.pending.clear();
  }
}
