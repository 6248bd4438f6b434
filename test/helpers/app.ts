import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp } from '../../src/app.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { Database } from '../../src/infra/db.ts';
import { createMetrics } from '../../src/infra/metrics.ts';
import type { Scope } from '../../src/modules/keys/repository.ts';
import { createKey } from '../../src/modules/keys/service.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';

export interface TestApp {
  app: FastifyInstance;
  db: TestDatabase;
  database: Database;
  config: Config;
  /** A new API key for `tenant` with `scopes`. */
  key(tenant: string, scopes?: Scope[]): Promise<string>;
  close(): Promise<void>;
}

/** A pulse app on a fresh database of its own, driven with app.inject. */
export async function createTestApp(overrides: Partial<Config> = {}): Promise<TestApp> {
  const db = await createTestDatabase();
  const config = loadConfig({}, { DATABASE_URL: db.url, LOG_LEVEL: 'silent', AUTH_CACHE_TTL_MS: 0, ...overrides });
  const logger = pino({ level: config.LOG_LEVEL });
  const metrics = createMetrics();
  const database = new Database(db.url, config, metrics, logger);
  // on the helper's own pool: a test's short DB_STATEMENT_TIMEOUT_MS must not apply to setup DDL
  await db.pool.query(`select pulse_ensure_partitions((now() at time zone 'utc')::date - 1, 9)`);
  const app = await buildApp({ config, database, metrics, logger });
  await app.ready();
  return {
    app,
    db,
    database,
    config,
    key: async (tenant, scopes = ['read', 'write', 'admin']) => (await createKey(database.api, tenant, scopes)).key,
    async close() {
      await app.close();
      await database.close();
      await db.drop();
    },
  };
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/**
 * A latest/dashboard body without its `as_of` (when the answer was read from the
 * database), after checking that it is an RFC 3339 time not in the future.
 */
export function withoutAsOf<T extends { as_of?: unknown }>(body: T): Omit<T, 'as_of'> {
  const { as_of, ...rest } = body;
  assert.equal(typeof as_of, 'string', 'as_of is present');
  const ms = Date.parse(as_of as string);
  assert.ok(Number.isFinite(ms) && ms <= Date.now() + 1000, `as_of ${String(as_of)} is a time, not in the future`);
  return rest;
}
