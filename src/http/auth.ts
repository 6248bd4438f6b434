import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Db } from '../infra/db.ts';
import { findActiveKeyByHash, type KeyIdentity, type Scope } from '../modules/keys/repository.ts';
import { hashKey } from '../modules/keys/service.ts';
import { problem } from './errors.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a route needs; every route under an authenticated context declares one. */
    scope?: Scope;
    /**
     * A query parameter that may stand in for the API key on this route (a capability
     * link): a request that has it and no Authorization header reaches the handler with
     * `req.auth` null, and the handler must verify it. With the header, the key rules apply.
     */
    tokenParam?: string;
  }
  interface FastifyRequest {
    /** Set for every route with a scope; null only when a `tokenParam` request was let through. */
    auth: KeyIdentity;
  }
}

const MAX_CACHED_KEYS = 10_000;

/**
 * Resolves an API key to its tenant and scopes, remembering verified keys for a short
 * TTL so a request does not pay a database round trip for authentication. Remembered by
 * the key as sent: a request with a known key costs a map lookup, not a SHA-256 (~5 % of
 * a cached answer's CPU). The keys are in this process's memory either way (each request
 * carries one); the database holds only their hashes.
 */
class KeyCache {
  private readonly entries = new Map<string, { identity: KeyIdentity; expires: number }>();
  constructor(
    private readonly db: Db,
    private readonly ttlMs: number,
  ) {}

  /** The identity of a key verified within the TTL, without I/O; undefined: ask load(). */
  remembered(key: string): KeyIdentity | undefined {
    const hit = this.entries.get(key);
    return hit && hit.expires > Date.now() ? hit.identity : undefined;
  }

  /** Reads the key (by its hash) from the database and remembers it (when active) for the TTL. */
  async load(key: string): Promise<KeyIdentity | undefined> {
    const readAt = Date.now(); // the TTL counts from the read: a revocation is seen within it
    const identity = await findActiveKeyByHash(this.db, hashKey(key));
    if (identity && this.ttlMs > 0) {
      if (this.entries.size >= MAX_CACHED_KEYS) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(key, { identity, expires: readAt + this.ttlMs });
    } else {
      this.entries.delete(key);
    }
    return identity;
  }
}

function bearer(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  // `Token` is what InfluxDB clients send; it means the same here
  const m = /^(?:Bearer|Token)\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/**
 * Authentication for every route registered in the context that registers this plugin
 * (by encapsulation: no URL matching). Each route declares `config.scope`.
 */
export const authPlugin = fp(
  async (app: FastifyInstance, opts: { db: Db; ttlMs: number }) => {
    const cache = new KeyCache(opts.db, opts.ttlMs);
    app.decorateRequest('auth', null as unknown as KeyIdentity);
    /** The refusal for this identity and scope, or none (and req.auth set). */
    const admit = (req: FastifyRequest, scope: Scope, identity: KeyIdentity | undefined): Error | undefined => {
      if (!identity) return problem('unauthorized', 'The API key is unknown or revoked.');
      if (!identity.scopes.includes(scope) && !identity.scopes.includes('admin')) {
        return problem('forbidden', `This operation needs the '${scope}' scope.`);
      }
      req.auth = identity;
    };
    // a callback hook: a remembered key (nearly every request) costs no promise
    app.addHook('onRequest', (req, _reply, done) => {
      const scope = req.routeOptions.config.scope;
      if (!scope) return done(); // public route (404 handler, docs)
      const key = bearer(req);
      if (!key) {
        const param = req.routeOptions.config.tokenParam;
        if (param && req.headers.authorization === undefined && (req.query as Record<string, unknown>)[param] !== undefined) return done();
        return done(problem('unauthorized', 'Send an API key as `Authorization: Bearer <key>`.'));
      }
      const known = cache.remembered(key);
      if (known) return done(admit(req, scope, known));
      cache.load(key).then((identity) => done(admit(req, scope, identity)), done);
    });
  },
  { name: 'pulse-auth' },
);
