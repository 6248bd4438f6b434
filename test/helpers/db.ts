import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * A database of this test file's own, cloned from the migrated template that
 * scripts/test.ts prepares. Dropped by `drop()`.
 */
export interface TestDatabase {
  url: string;
  name: string;
  /** A pool for assertions straight against the database. */
  pool: pg.Pool;
  drop(): Promise<void>;
}

export function adminUrl(): string {
  const url = process.env.PULSE_TEST_ADMIN_URL;
  if (!url) throw new Error('run the tests with `npm test` (it prepares the database: scripts/test.ts)');
  return url;
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function adminQuery(sql: string) {
  const c = new pg.Client({ connectionString: adminUrl() });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `pulse_t_${randomBytes(6).toString('hex')}`;
  const template = process.env.PULSE_TEST_TEMPLATE!;
  // CREATE DATABASE ... TEMPLATE needs the template to have no other sessions: retry briefly
  for (let attempt = 0; ; attempt++) {
    try {
      await adminQuery(`create database ${name} template ${template}`);
      break;
    } catch (err) {
      if (attempt >= 20 || !/being accessed by other users/.test((err as Error).message)) throw err;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  const url = withDatabase(adminUrl(), name);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  // an idle connection killed when the database is dropped must not crash the test process
  pool.on('error', () => {});
  return {
    url,
    name,
    pool,
    async drop() {
      await pool.end();
      await adminQuery(`drop database if exists ${name} with (force)`);
    },
  };
}
