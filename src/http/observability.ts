import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { Db, QueryTiming } from '../infra/db.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Database time of this request, for Server-Timing. */
    timing: QueryTiming;
    /** The API pool, timed for this request. */
    db: Db;
    startedAt: number;
  }
}

/**
 * Per request: a timed database handle, a `Server-Timing` header (db, cache, total) and the
 * request-duration histogram labelled by route pattern (never raw URLs: bounded labels).
 */
export const observabilityPlugin = fp(
  async (app: FastifyInstance) => {
    const { database, metrics } = app.pulse;
    app.decorateRequest('timing', null as unknown as QueryTiming);
    app.decorateRequest('db', null as unknown as Db);
    app.decorateRequest('startedAt', 0);
    // callback hooks: an async hook costs a promise per request, on every request
    app.addHook('onRequest', (req, _reply, done) => {
      req.startedAt = performance.now();
      req.timing = { dbMs: 0, queries: 0 };
      req.db = database.api.timed(req.timing);
      done();
    });
    app.addHook('onSend', (req, reply, payload, done) => {
      const total = performance.now() - req.startedAt;
      // cache: the tier that answered this request's lookups (pulse-cache), when it made any
      const tier = req.cache?.tier;
      reply.header(
        'server-timing',
        `db;dur=${req.timing.dbMs.toFixed(2)};desc="${req.timing.queries} queries", ${tier ? `cache;desc=${tier}, ` : ''}total;dur=${total.toFixed(2)}`,
      );
      reply.header('x-request-id', req.id);
      done(null, payload);
    });
    app.addHook('onResponse', (req, reply, done) => {
      metrics.httpRequests.observe(
        { route: req.routeOptions.url ?? 'unmatched', method: req.method, status: String(reply.statusCode) },
        (performance.now() - req.startedAt) / 1000,
      );
      done();
    });
  },
  { name: 'pulse-observability', dependencies: [] },
);
