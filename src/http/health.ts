import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { latestMigrationVersion } from '../infra/migrate.ts';

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

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
};
