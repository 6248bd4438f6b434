import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NO_COMPRESSION_HOOK } from '../../http/cache.ts';
import { DeviceParams, problemResponses } from '../../http/schemas.ts';
import {
  Dashboard,
  DashboardQuery,
  LatestOfDevice,
  RangePage,
  RangeQuery,
} from './schemas.ts';
import { DeviceStats, StatsQuery } from '../stats/schemas.ts';
import * as service from './service.ts';

export const readingQueryRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const skewUs = app.pulse.config.MAX_FUTURE_SKEW_S * 1e6;
  app.get(
    '/devices/:device/latest',
    {
      ...NO_COMPRESSION_HOOK,
      config: { scope: 'read' },
      schema: { tags: ['readings'], summary: 'Latest value of every metric of a device', params: DeviceParams, response: { 200: LatestOfDevice, ...problemResponses } },
    },
    async (req, reply) => reply.sendRendered(await service.latestOfDevice(req.db, req.cache, req.auth.tenant_id, req.params.device)),
  );

  app.get(
    '/devices/:device/readings',
    {
      config: { scope: 'read' },
      schema: { tags: ['readings'], summary: 'Readings in a time range, newest first (keyset pages)', params: DeviceParams, querystring: RangeQuery, response: { 200: RangePage, ...problemResponses } },
    },
    async (req) => service.rangeOfDevice(req.db, req.auth.tenant_id, req.params.device, req.query, skewUs),
  );

  app.get(
    '/devices/:device/stats',
    {
      ...NO_COMPRESSION_HOOK,
      config: { scope: 'read' },
      schema: { tags: ['readings'], summary: 'Count, min, max, avg, sum, first, last of one metric per time bucket', params: DeviceParams, querystring: StatsQuery, response: { 200: DeviceStats, ...problemResponses } },
    },
    async (req, reply) => reply.sendRendered(await app.stats.device(req.db, req.cache, req.auth.tenant_id, req.params.device, req.query)),
  );

  app.get(
    '/readings/latest',
    {
      ...NO_COMPRESSION_HOOK,
      config: { scope: 'read' },
      schema: { tags: ['readings'], summary: 'Dashboard: devices with the newest readings and their latest values', querystring: DashboardQuery, response: { 200: Dashboard, ...problemResponses } },
    },
    async (req, reply) => reply.sendRendered(await service.dashboard(req.db, req.cache, req.auth.tenant_id, req.query)),
  );
};
