/**
 * The test command (`npm test`): a real PostgreSQL for the suite (DATABASE_URL, or the
 * embedded server in .pulse/test-pg when it is unset), one migrated template database
 * that every test file clones (test/helpers/db.ts), then node's test runner over test/.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { migrate } from '../src/infra/migrate.ts';
import { startEmbeddedPostgres } from '../src/infra/embedded-postgres.ts';

const root = resolve(import.meta.dirname, '..');
const log = pino({ level: 'warn' });
const template = `pulse_tpl_${process.pid}`;

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function admin(url: string, sql: string) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

let stopEmbedded: (() => Promise<void>) | null = null;
let adminUrl = process.env.DATABASE_URL ?? '';
if (!adminUrl) {
  adminUrl = 'postgres://postgres:postgres@127.0.0.1:54330/postgres';
  // another test run on this machine may have it up already: share it
  const probe = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 1000 });
  const up = await probe.connect().then(
    () => true,
    () => false,
  );
  await probe.end().catch(() => {});
  if (!up) {
    const server = await startEmbeddedPostgres('.pulse/test-pg', 54330, log).catch((err: unknown) => {
      throw new Error(`could not start the embedded PostgreSQL for the tests (.pulse/test-pg): ${String(err)}`);
    });
    adminUrl = server.url;
    stopEmbedded = server.stop;
  }
}

let code = 1;
try {
  await admin(adminUrl, `drop database if exists ${template}`);
  await admin(adminUrl, `create database ${template}`);
  await migrate(withDatabase(adminUrl, template));

  const only = process.argv.slice(2);
  const files = only.length
    ? only
    : readdirSync(resolve(root, 'test')).filter((f) => f.endsWith('.test.ts')).sort().map((f) => `test/${f}`);
  code = await new Promise<number>((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, PULSE_TEST_ADMIN_URL: adminUrl, PULSE_TEST_TEMPLATE: template },
    });
    child.on('exit', (c, signal) => done(c ?? (signal ? 1 : 0)));
  });
} finally {
  await admin(adminUrl, `drop database if exists ${template}`).catch(() => {});
  if (stopEmbedded) await stopEmbedded();
}
process.exit(code);
