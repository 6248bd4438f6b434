import { createHash } from 'node:crypto';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PulseCache, RequestCache } from '../infra/cache.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The two-tier read cache (src/infra/cache.ts). */
    cache: PulseCache;
  }
  interface FastifyRequest {
    /** The cache for this request; its lookups feed Server-Timing `cache` and `X-Cache-Stale`. */
    cache: RequestCache;
  }
}

/** Whether an If-None-Match header names `etag` (weak comparison, RFC 9110 §13.1.2). */
export function etagMatches(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  const opaque = etag.replace(/^W\//, '');
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === opaque);
}

function conditional(req: FastifyRequest, reply: FastifyReply, payload: unknown): unknown {
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return payload;
  // a strong validator of the serialized (uncompressed) body; compression varies by Accept-Encoding
  const etag = `"${createHash('sha1').update(payload).digest('base64url')}"`;
  reply.header('etag', etag);
  // API answers depend on the key and change with every write: caches must revalidate
  if (req.routeOptions.config && 'scope' in req.routeOptions.config && !reply.hasHeader('cache-control')) {
    reply.header('cache-control', 'private, no-cache');
  }
  const inm = req.headers['if-none-match'];
  if (inm && etagMatches(inm, etag)) {
    reply.code(304);
    reply.removeHeader('content-type');
    reply.removeHeader('content-length');
    return '';
  }
  return payload;
}

/**
 * Creates the cache (and closes it with the app), gives every request a RequestCache, and
 * answers GETs conditionally: ETag + If-None-Match → 304. Registered before compression,
 * so the ETag is computed over the uncompressed body.
 */
export const cachePlugin = fp(
  async (app: FastifyInstance) => {
    const { config, metrics, logger } = app.pulse;
    const cache = new PulseCache(config, metrics, logger);
    await cache.start();
    app.decorate('cache', cache);
    app.decorateRequest('cache', null as unknown as RequestCache);
    app.addHook('onRequest', async (req) => {
      req.cache = new RequestCache(cache);
    });
    app.addHook('onSend', async (req, reply, payload) => {
      if (req.cache?.stale) reply.header('x-cache-stale', 'true');
      if ((req.method === 'GET' || req.method === 'HEAD') && reply.statusCode === 200) return conditional(req, reply, payload);
      return payload;
    });
    app.addHook('onClose', () => cache.close());
  },
  { name: 'pulse-cache' },
);
