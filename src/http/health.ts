import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import cluster from 'node:cluster';
import { Type } from 'typebox';
import { ClusterMetricsClient } from '../infra/cluster-metrics.ts';
import { latestMigrationVersion } from '../infra/migrate.ts';
import { problem } from './errors.ts';

export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { database, metrics } = app.pulse;
  const expected = await latestMigrationVersion();
  const Health = Type.Object({ status: Type.String(), detail: Type.Optional(Type.String()) });

  app.get('/healthz', { schema: { hide: true, response: { 200: Health } } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { hide: true, response: { 200: Health, 503: Health } } }, async (_req, reply) => {
    try {
      const rows = await database.api.query<{ version: number | null }>(
        'health.migration_version',
        'select max(version) as version from pulse_migrations',
      );
      const version = rows[0]?.version ?? 0;
      if (version < expected) {
        return reply.code(503).send({ status: 'unavailable', detail: `database at migration ${version}, expected ${expected}` });
      }
      return { status: 'ok' };
    } catch {
      return reply.code(503).send({ status: 'unavailable', detail: 'database unreachable' });
    }
  });

  // a cluster worker (`pulse serve --workers N`) answers for the whole cluster, through
  // the primary; a single process, its own registry
  const clusterMetrics = cluster.isWorker ? new ClusterMetricsClient() : null;
  if (clusterMetrics) app.addHook('onClose', async () => clusterMetrics.close());

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    if (!clusterMetrics) {
      reply.type(metrics.registry.contentType);
      return metrics.registry.metrics();
    }
    // no fallback to this worker's registry: Prometheus would take its counters, a
    // fraction of the cluster's, for a reset. A failed scrape is a gap, not a wrong value.
    const text = await clusterMetrics.fetch().catch((err: unknown) => {
      throw problem('unavailable', 'The cluster\'s metrics could not be gathered from every worker.', {}, { cause: err, retryAfterS: 1 });
    });
    reply.type(metrics.registry.contentType);
    return text;
  });
};
