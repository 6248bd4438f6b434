import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PulseCache, RequestCache } from '../infra/cache.ts';
import { EncodedBodies, etagMatches, etagOf, type Rendered } from './rendered.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The two-tier read cache (src/infra/cache.ts). */
    cache: PulseCache;
  }
  interface FastifyRequest {
    /** The cache for this request; its lookups feed Server-Timing `cache` and `X-Cache-Stale`. */
    cache: RequestCache;
  }
  interface FastifyReply {
    /** Sends a rendered answer (200, or 304 when If-None-Match names it), compressed once per change. */
    sendRendered(r: Rendered): FastifyReply;
  }
}

/** Answers this large or larger are compressed (rendered ones here, others by @fastify/compress: src/app.ts). */
export const COMPRESS_THRESHOLD_BYTES = 1024;
/**
 * Compression effort. A cached answer is compressed once per change and kept: brotli 4,
 * gzip 6. Other answers (and rendered ones sent once: Rendered.once, or all of them when
 * no compressed forms are kept) are compressed per request: the fastest levels. On a 140 KB stats answer
 * (floats) brotli 1 took 0.5 ms against 1.5 ms at 4 for the same size; gzip 1, 0.9 ms
 * against 2.5 ms at 6, 12 % larger.
 */
export const RENDERED_BROTLI_QUALITY = 4;
export const RENDERED_GZIP_LEVEL = 6;
export const DYNAMIC_BROTLI_QUALITY = 1;
export const DYNAMIC_GZIP_LEVEL = 1;

/**
 * Route options that leave the response compression hook off a route where it could only
 * look and pass: a route answering with sendRendered (compressed once per change, with
 * Content-Encoding set, here), or one whose answers are always a few bytes (write
 * acknowledgements). Their other answers (problem+json, 304) are small.
 */
export const NO_COMPRESSION_HOOK = { compress: false } as const;

// API answers depend on the key and change with every write: caches must revalidate
function privateNoCache(req: FastifyRequest, reply: FastifyReply) {
  if (req.routeOptions.config && 'scope' in req.routeOptions.config && !reply.hasHeader('cache-control')) {
    reply.header('cache-control', 'private, no-cache');
  }
}

function notModified(reply: FastifyReply) {
  reply.code(304);
  reply.removeHeader('content-type');
  reply.removeHeader('content-length');
}

function conditional(req: FastifyRequest, reply: FastifyReply, payload: unknown): unknown {
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return payload;
  if (reply.hasHeader('etag')) return payload; // rendered: its validator came with it
  // compression varies by Accept-Encoding: the ETag is over the uncompressed body
  const etag = etagOf(payload);
  reply.header('etag', etag);
  privateNoCache(req, reply);
  const inm = req.headers['if-none-match'];
  if (inm && etagMatches(inm, etag)) {
    notModified(reply);
    return '';
  }
  return payload;
}

/**
 * Creates the cache (and closes it with the app), gives every request a RequestCache, and
 * answers GETs conditionally: ETag + If-None-Match → 304. Registered before compression,
 * so the ETag is computed over the uncompressed body. Rendered (cached) answers carry
 * their ETag and are compressed here, once per change, which @fastify/compress then
 * leaves alone (Content-Encoding set).
 */
export const cachePlugin = fp(
  async (app: FastifyInstance) => {
    const { config, metrics, logger } = app.pulse;
    const cache = new PulseCache(config, metrics, logger);
    await cache.start();
    const encoded = new EncodedBodies({
      enabled: config.COMPRESS_RESPONSES,
      thresholdBytes: COMPRESS_THRESHOLD_BYTES,
      brotliQuality: RENDERED_BROTLI_QUALITY,
      gzipLevel: RENDERED_GZIP_LEVEL,
      onceBrotliQuality: DYNAMIC_BROTLI_QUALITY,
      onceGzipLevel: DYNAMIC_GZIP_LEVEL,
      maxBytes: config.CACHE_ENABLED ? config.CACHE_COMPRESSED_MAX_BYTES : 0,
    });
    metrics.cacheSource.compressedBytes = () => encoded.calculatedSize;
    app.decorate('cache', cache);
    app.decorateRequest('cache', null as unknown as RequestCache);
    app.addHook('onRequest', (req, reply, done) => {
      req.cache = new RequestCache(cache, (v) => reply.serialize(v) as string);
      done();
    });
    app.decorateReply('sendRendered', function (this: FastifyReply, r: Rendered) {
      const req = this.request;
      this.header('etag', r.etag);
      privateNoCache(req, this);
      const inm = req.headers['if-none-match'];
      if (inm && etagMatches(inm, r.etag)) {
        notModified(this);
        return this.send();
      }
      this.header('content-type', 'application/json; charset=utf-8');
      if (encoded.compressible(r.body)) this.header('vary', 'accept-encoding');
      const encoding = encoded.encodingFor(req.headers['accept-encoding'], r.body);
      if (!encoding) return this.send(r.body);
      this.header('content-encoding', encoding);
      return this.send(encoded.get(r, encoding));
    });
    app.addHook('onSend', (req, reply, payload, done) => {
      if (req.cache?.stale) reply.header('x-cache-stale', 'true');
      if ((req.method === 'GET' || req.method === 'HEAD') && reply.statusCode === 200) return done(null, conditional(req, reply, payload));
      done(null, payload);
    });
    app.addHook('onClose', () => cache.close());
  },
  { name: 'pulse-cache' },
);
