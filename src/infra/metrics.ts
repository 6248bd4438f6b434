import client from 'prom-client';

/**
 * One registry per app instance (tests build several apps in one process). Every
 * layer's metrics are declared here so /metrics is documented in one place.
 */
export function createMetrics() {
  const registry = new client.Registry();
  // filled in by the ingest batcher, read at scrape time
  const ingestBufferSource = { values: () => 0, bytes: () => 0 };
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
    mqttMessages: new client.Counter({
      name: 'pulse_mqtt_messages_total',
      help:
        'MQTT bridge messages by outcome: committed, malformed (dropped), rejected (dropped: unknown device), ' +
        'dead_lettered, retried (a submit retried after 503), unacked (left for the broker to redeliver)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
