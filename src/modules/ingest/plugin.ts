import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { WriteBatcher } from './batcher.ts';
import { DeviceIds, type IngestCaches } from './commit.ts';
import { MetricSets } from './metric-sets.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Group-commit write batcher shared by every ingest path (HTTP JSON, line protocol, MQTT). */
    batcher: WriteBatcher;
    /** Device and metric-set ids known to this process, for the batcher and direct writes. */
    ingestCaches: IngestCaches;
  }
}

/** Creates the write batcher on the ingest pool, evicting the cache after each commit; on close, flushes what is queued. */
export const batcherPlugin = fp(
  async (app: FastifyInstance) => {
    const { config, database, metrics } = app.pulse;
    const caches: IngestCaches = { deviceIds: new DeviceIds(), metricSets: new MetricSets() };
    const batcher = new WriteBatcher(
      database.ingest,
      {
        maxBatchValues: config.INGEST_BATCH_MAX_VALUES,
        maxWaitMs: config.INGEST_BATCH_MAX_WAIT_MS,
        concurrency: config.INGEST_FLUSH_CONCURRENCY,
        maxBufferValues: config.INGEST_BUFFER_MAX_VALUES,
        maxBufferBytes: config.INGEST_BUFFER_MAX_BYTES,
      },
      metrics,
      app.pulse.logger,
      caches,
      // writes are acknowledged only after the cache entries they change are evicted
      app.cache.enabled
        ? (written) => Promise.all([...written].map(([tenantId, w]) => app.cache.afterWrite(tenantId, w.devices, w.created, w.late))).then(() => {})
        : null,
    );
    app.decorate('batcher', batcher);
    app.decorate('ingestCaches', caches);
    app.addHook('onClose', () => batcher.close());
  },
  { name: 'pulse-batcher', dependencies: ['pulse-cache'] },
);
