import client from 'prom-client';

/**
 * One registry per app instance (tests build several apps in one process). Every
 * layer's metrics are declared here so /metrics is documented in one place.
 *
 * With `pulse serve --workers N`, /metrics combines the workers' registries
 * (infra/cluster-metrics.ts) metric by metric with its `aggregator`: counters and
 * histograms, and gauges of per-process quantities (buffers, cache bytes, pool
 * connections), are summed — prom-client's default; gauges of one shared state (the
 * queue, the rollup watermark, "is anything broken") take the max.
 */
export function createMetrics() {
  const registry = new client.Registry();
  // filled in by the ingest batcher, read at scrape time
  const ingestBufferSource = { values: () => 0, bytes: () => 0 };
  // filled in by the cache, read at scrape time
  const cacheSource = { l1Bytes: () => 0, compressedBytes: () => 0, circuitOpen: () => 0 };
  // filled in by a job worker running in this process (queue state is read from the database at scrape time)
  const jobsSource: { snapshot: () => Promise<JobsSnapshot | null> } = { snapshot: async () => null };
  client.collectDefaultMetrics({ register: registry });
  const ms = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  return {
    registry,
    httpRequests: new client.Histogram({
      name: 'pulse_http_request_duration_seconds',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'] as const,
      buckets: ms,
      registers: [registry],
    }),
    dbQueries: new client.Histogram({
      name: 'pulse_db_query_duration_seconds',
      help: 'Database queries by name, pool and outcome',
      labelNames: ['query', 'pool', 'outcome'] as const,
      buckets: ms,
      registers: [registry],
    }),
    readingsWritten: new client.Counter({
      name: 'pulse_readings_values_written_total',
      help: 'Metric values committed',
      registers: [registry],
    }),
    ingestBatchValues: new client.Histogram({
      name: 'pulse_ingest_batch_values',
      help: 'Values per group-commit flush',
      buckets: [1, 3, 10, 30, 100, 300, 1000, 3000, 10_000, 30_000, 100_000],
      registers: [registry],
    }),
    ingestFlushSeconds: new client.Histogram({
      name: 'pulse_ingest_flush_duration_seconds',
      help: 'Group-commit flush duration (transaction, commit included) by outcome',
      labelNames: ['outcome'] as const,
      buckets: ms,
      registers: [registry],
    }),
    ingestBuffer: new client.Gauge({
      name: 'pulse_ingest_buffer',
      help: 'Ingest values and bytes queued or being flushed',
      labelNames: ['unit'] as const,
      registers: [registry],
      collect() {
        this.set({ unit: 'values' }, ingestBufferSource.values());
        this.set({ unit: 'bytes' }, ingestBufferSource.bytes());
      },
    }),
    ingestBufferSource,
    ingestRejected: new client.Counter({
      name: 'pulse_ingest_rejected_total',
      help: 'Write requests refused, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    rollupRefreshRuns: new client.Counter({
      name: 'pulse_rollup_refresh_runs_total',
      help: 'Rollup refresh runs by outcome: ok, skipped (another process held the lock), error',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    rollupRefreshSeconds: new client.Histogram({
      name: 'pulse_rollup_refresh_duration_seconds',
      help: 'Rollup refresh run duration',
      buckets: ms,
      registers: [registry],
    }),
    rollupLagSeconds: new client.Gauge({
      name: 'pulse_rollup_lag_seconds',
      help: 'How far the rollup watermark is behind now, as of the last refresh run in this process',
      // one watermark; processes that never refreshed report 0
      aggregator: 'max',
      registers: [registry],
    }),
    cacheLookups: new client.Counter({
      name: 'pulse_cache_lookups_total',
      help: 'Cache lookups by kind (device, devices, latest, dashboard) and result: l1, l2 (hits per tier), miss (read from the database), stale (served because the database failed)',
      labelNames: ['kind', 'result'] as const,
      registers: [registry],
    }),
    cacheEvictions: new client.Counter({
      name: 'pulse_cache_evictions_total',
      help: 'Cache entries evicted by kind and reason: invalidated (a write changed them), capacity (L1 full, least recently used)',
      labelNames: ['kind', 'reason'] as const,
      registers: [registry],
    }),
    cacheL1Bytes: new client.Gauge({
      name: 'pulse_cache_l1_bytes',
      help: 'Bytes of serialized entries in the L1 (in-process) cache',
      registers: [registry],
      collect() {
        this.set(cacheSource.l1Bytes());
      },
    }),
    cacheCompressedBytes: new client.Gauge({
      name: 'pulse_cache_compressed_bytes',
      help: 'Bytes of compressed forms of cached answers kept in memory (bounded by CACHE_COMPRESSED_MAX_BYTES)',
      registers: [registry],
      collect() {
        this.set(cacheSource.compressedBytes());
      },
    }),
    cacheRedisErrors: new client.Counter({
      name: 'pulse_cache_redis_errors_total',
      help: 'Failed or timed-out Redis operations (L2 and bus)',
      registers: [registry],
    }),
    cacheL2Circuit: new client.Gauge({
      name: 'pulse_cache_l2_circuit_open',
      help: '1 while the L2 (Redis) tier is skipped after a failure (circuit open), else 0',
      // 1 if any process has it open
      aggregator: 'max',
      registers: [registry],
      collect() {
        this.set(cacheSource.circuitOpen());
      },
    }),
    cacheSource,
    mqttMessages: new client.Counter({
      name: 'pulse_mqtt_messages_total',
      help:
        'MQTT bridge messages by outcome: committed, malformed (dropped), rejected (dropped: unknown device), ' +
        'dead_lettered, retried (a submit retried after 503), unacked (left for the broker to redeliver)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    reports: new client.Counter({
      name: 'pulse_reports_total',
      help: 'Report jobs by outcome: ready, retried (an attempt failed, the job system retries), failed (gave up), expired',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    mails: new client.Counter({
      name: 'pulse_mails_total',
      help: 'E-mails by outcome: sent (SMTP accepted), written (.eml file, no SMTP_URL), failed (retried by the job system), dropped (invalid job payload)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    webhookDeliveries: new client.Counter({
      name: 'pulse_webhook_deliveries_total',
      help: 'Webhook delivery attempts by outcome: delivered (2xx), failed (non-2xx, timeout, network; retried), dropped (webhook deleted)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    jobDuration: new client.Histogram({
      name: 'pulse_job_duration_seconds',
      help: 'Background jobs run by this process, by task and outcome (ok; error: the job is retried or, at its last attempt, stays failed)',
      labelNames: ['task', 'outcome'] as const,
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600],
      registers: [registry],
    }),
    jobs: new client.Gauge({
      name: 'pulse_jobs',
      help: 'Jobs in the queue (all workers) by task and state: queued (waiting, retries included), running, failed (attempts exhausted); reported by processes that run a worker',
      labelNames: ['task', 'state'] as const,
      // the one queue's counts: summing two reporting processes would count it twice
      aggregator: 'max',
      registers: [registry],
      async collect() {
        const s = await jobsSource.snapshot();
        this.reset();
        for (const c of s?.counts ?? []) this.set({ task: c.task, state: c.state }, c.n);
      },
    }),
    jobsOldestQueued: new client.Gauge({
      name: 'pulse_jobs_oldest_queued_seconds',
      help: 'Age of the oldest job due to run and not yet started (0 when none)',
      // the one queue; processes without a job worker report 0
      aggregator: 'max',
      registers: [registry],
      async collect() {
        this.set((await jobsSource.snapshot())?.oldestQueuedS ?? 0);
      },
    }),
    jobsSource,
  };
}

export interface JobsSnapshot {
  counts: { task: string; state: 'queued' | 'running' | 'failed'; n: number }[];
  oldestQueuedS: number;
}

export type Metrics = ReturnType<typeof createMetrics>;
