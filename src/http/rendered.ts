import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { Negotiator } from '@fastify/accept-negotiator';
import { LRUCache } from 'lru-cache';

/**
 * An answer already serialized, with its ETag. Cached answers are stored this way, so a
 * cache hit is sent as it is: no parse, no serialization, no hashing per request.
 */
export interface Rendered {
  body: string;
  etag: string;
  /** Rendered for this one answer (not cached): compressed at the per-request effort and not kept. */
  once?: boolean;
}

/** A strong validator of the serialized (uncompressed) body. */
export const etagOf = (body: string | Buffer) => `"${createHash('sha1').update(body).digest('base64url')}"`;

export const renderBody = (body: string): Rendered => ({ body, etag: etagOf(body) });
/** renderBody for an answer that is sent once and not cached. */
export const renderOnce = (body: string): Rendered => ({ body, etag: etagOf(body), once: true });

/** Whether an If-None-Match header names `etag` (weak comparison, RFC 9110 §13.1.2). */
export function etagMatches(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  const opaque = etag.replace(/^W\//, '');
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === opaque);
}

export type Encoding = 'br' | 'gzip';
const ENCODINGS: Encoding[] = ['br', 'gzip'];
/** `*` and `x-gzip` read as gzip, as @fastify/compress reads them (the two must agree). */
const GZIP_ALIAS = /\*|x-gzip/g;

export interface EncodedOptions {
  enabled: boolean;
  thresholdBytes: number;
  /** Effort for answers compressed once and kept (the LRU). */
  brotliQuality: number;
  gzipLevel: number;
  /** Effort for answers compressed per request: `once` answers, or all of them without an LRU. */
  onceBrotliQuality: number;
  onceGzipLevel: number;
  maxBytes: number;
}

/**
 * Compressed forms of rendered answers, by encoding and ETag, bounded in bytes (least
 * recently used dropped beyond). A cached dashboard is compressed once per change, not
 * once per request.
 */
export class EncodedBodies {
  private readonly lru: LRUCache<string, Buffer> | null;
  // Accept-Encoding values repeat: each distinct one is parsed once (bounded: clients choose them)
  private readonly negotiator = new Negotiator<Encoding>({ supportedValues: ENCODINGS, cache: new LRUCache<string, string>({ max: 256 }) });

  constructor(private readonly opts: EncodedOptions) {
    this.lru =
      opts.maxBytes > 0
        ? new LRUCache<string, Buffer>({ maxSize: opts.maxBytes, maxEntrySize: Math.max(1, Math.floor(opts.maxBytes / 8)), sizeCalculation: (b) => b.length || 1 })
        : null;
  }

  /** The encoding to answer with (null: identity), negotiated as the response compression does it. */
  encodingFor(acceptEncoding: string | undefined, body: string): Encoding | null {
    if (!this.opts.enabled || !acceptEncoding || body.length < this.opts.thresholdBytes) return null;
    return this.negotiator.negotiate(acceptEncoding.toLowerCase().replace(GZIP_ALIAS, 'gzip'));
  }

  /** Whether answers this large may be compressed (and so vary by Accept-Encoding). */
  compressible(body: string): boolean {
    return this.opts.enabled && body.length >= this.opts.thresholdBytes;
  }

  get(r: Rendered, encoding: Encoding): Buffer {
    const keep = this.lru !== null && !r.once;
    const key = `${encoding}${r.etag}`;
    const hit = keep ? this.lru!.get(key) : undefined;
    if (hit) return hit;
    const input = Buffer.from(r.body);
    const out =
      encoding === 'br'
        ? zlib.brotliCompressSync(input, {
            params: {
              [zlib.constants.BROTLI_PARAM_QUALITY]: keep ? this.opts.brotliQuality : this.opts.onceBrotliQuality,
              [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
              // the whole input is at hand: brotli sizes its window and buffers once (~25 % faster on 140 KB)
              [zlib.constants.BROTLI_PARAM_SIZE_HINT]: input.length,
            },
          })
        : zlib.gzipSync(input, { level: keep ? this.opts.gzipLevel : this.opts.onceGzipLevel });
    if (keep) this.lru!.set(key, out);
    return out;
  }

  get calculatedSize(): number {
    return this.lru?.calculatedSize ?? 0;
  }
}
