import fp from 'fastify-plugin';
import { NO_COMPRESSION_HOOK } from '../../http/cache.ts';
import type { FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { problemResponses } from '../../http/schemas.ts';
import { FleetStats, FleetStatsQuery } from './schemas.ts';
import { StatsService } from './service.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Device and fleet stats (the device route lives with the other device reads). */
    stats: StatsService;
  }
}

export const statsPlugin = fp(
  async (app: FastifyInstance) => {
    app.decorate('stats', new StatsService(app.pulse.config.ROLLUPS_ENABLED));
  },
  { name: 'pulse-stats' },
);

export const fleetStatsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/stats',
    {
      ...NO_COMPRESSION_HOOK,
      config: { scope: 'read' },
      schema: {
        tags: ['stats'],
        summary: "Count, min, max, avg, sum, first, last of one metric per time bucket over the tenant's devices",
        querystring: FleetStatsQuery,
        response: { 200: FleetStats, ...problemResponses },
      },
    },
    async (req, reply) => reply.sendRendered(await app.stats.fleet(req.db, req.cache, req.auth.tenant_id, req.query)),
  );
};
