import zlib from 'node:zlib';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import compress from '@fastify/compress';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import type { Database } from './infra/db.ts';
import type { Metrics } from './infra/metrics.ts';
import { authPlugin } from './http/auth.ts';
import { cachePlugin, COMPRESS_THRESHOLD_BYTES, DYNAMIC_BROTLI_QUALITY, DYNAMIC_GZIP_LEVEL } from './http/cache.ts';
import { errorHandler, notFoundHandler } from './http/errors.ts';
import { healthRoutes } from './http/health.ts';
import { observabilityPlugin } from './http/observability.ts';
import { ProblemSchema } from './http/schemas.ts';
import { validatorCompiler } from './http/validation.ts';
import { deviceRoutes } from './modules/devices/routes.ts';
import { jobAdminRoutes } from './jobs/admin-routes.ts';
import { batcherPlugin } from './modules/ingest/plugin.ts';
import { influxRoutes } from './modules/ingest/influx-routes.ts';
import { ingestRoutes } from './modules/ingest/routes.ts';
import { mqttPlugin } from './modules/mqtt/plugin.ts';
import { readingQueryRoutes } from './modules/readings/routes.ts';
import { sessionCompletionsPlugin } from './modules/sessions/plugin.ts';
import { sessionRoutes } from './modules/sessions/routes.ts';
import { fleetStatsRoutes, statsPlugin } from './modules/stats/routes.ts';
import { reportRoutes } from './modules/reports/routes.ts';
import { webhookRoutes } from './modules/webhooks/routes.ts';

export interface AppDeps {
  config: Config;
  database: Database;
  metrics: Metrics;
  logger: Logger;
}

declare module 'fastify' {
  interface FastifyInstance {
    pulse: AppDeps;
  }
}

/** Builds the HTTP app: registers plugins and routes, nothing else (no listening, no I/O). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: config.BODY_LIMIT_BYTES,
    requestIdHeader: 'x-request-id',
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    return503OnClosing: true,
    // device ids are up to 128 characters (percent-encoded, more): the default cap is 100
    routerOptions: { maxParamLength: 512 },
    // router-level failures (bad percent-encoding, …) get problem+json like everything else
    frameworkErrors: (err, req, reply) => errorHandler(err, req, reply),
    forceCloseConnections: 'idle',
    ajv: { customOptions: {} },
    // a line per request costs more than the request at these rates; errors are logged
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('pulse', deps);
  app.setValidatorCompiler(validatorCompiler());
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  app.addSchema(ProblemSchema);
  // `curl -d` labels a body application/x-www-form-urlencoded; no pulse endpoint takes
  // forms, so such a body is read as the JSON it is
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));

  await app.register(swagger, {
    openapi: {
      info: { title: 'pulse', version: '1', description: 'IoT telemetry API. Errors are application/problem+json.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // before compression: its ETag hook must see the uncompressed body
  await app.register(cachePlugin);
  // Fastify reads no body on GET and HEAD: no request decoding hook on them (registered
  // before compression, whose onRoute hook reads the option)
  app.addHook('onRoute', (route) => {
    if (route.decompress === undefined && [route.method].flat().every((m) => m === 'GET' || m === 'HEAD')) route.decompress = false;
  });
  // request bodies: gzip/deflate/br decoded for every route that reads one; responses:
  // compressed over 1 KiB, except on routes that opt out (NO_COMPRESSION_HOOK)
  await app.register(compress, {
    global: true,
    // COMPRESS_RESPONSES=false (the bench's ablation) leaves request decoding on
    threshold: config.COMPRESS_RESPONSES ? COMPRESS_THRESHOLD_BYTES : Number.MAX_SAFE_INTEGER,
    encodings: ['br', 'gzip'],
    brotliOptions: { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: DYNAMIC_BROTLI_QUALITY } },
    zlibOptions: { level: DYNAMIC_GZIP_LEVEL },
    requestEncodings: ['gzip', 'deflate', 'br'],
    // answers up to 64 KiB are compressed in one call (the default on 2 cores is 8 KiB): a
    // zlib stream per answer cost more than the compression (a 100-reading range page is
    // ~8 KB: brotli 1 takes ~30 µs), and the rendered answers are compressed in one call too
    syncThreshold: 64 * 1024,
  });
  await app.register(observabilityPlugin);
  await app.register(healthRoutes);
  await app.register(batcherPlugin);
  await app.register(sessionCompletionsPlugin);
  if (config.MQTT_URL) await app.register(mqttPlugin);
  await app.register(statsPlugin);
  // everything below authenticates; each route declares the scope it needs
  await app.register(async (authed) => {
    await authed.register(authPlugin, { db: deps.database.api, ttlMs: config.AUTH_CACHE_TTL_MS });
    await authed.register(
      async (v1) => {
        await v1.register(deviceRoutes);
        await v1.register(readingQueryRoutes);
        await v1.register(fleetStatsRoutes);
        await v1.register(ingestRoutes);
        await v1.register(reportRoutes);
        await v1.register(webhookRoutes);
        await v1.register(sessionRoutes);
        await v1.register(jobAdminRoutes);
      },
      { prefix: '/v1' },
    );
    await authed.register(influxRoutes);
  });
  return app;
}
