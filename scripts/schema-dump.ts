/** `npm run schema:dump`: migrate a scratch database and write db/schema.sql (DATABASE_URL, or the embedded server). */
import { writeFile } from 'node:fs/promises';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from '../src/config.ts';
import { migrate } from '../src/infra/migrate.ts';
import { openDatabase } from '../src/start/database.ts';
import { describeSchema } from './dump-schema.ts';

const handle = await openDatabase(loadConfig(), pino({ level: 'warn' }));
const name = `pulse_schema_${process.pid}`;
const admin = async (sql: string) => {
  const c = new pg.Client({ connectionString: handle.url });
  await c.connect();
  await c.query(sql).finally(() => c.end());
};
try {
  await admin(`create database ${name}`);
  const u = new URL(handle.url);
  u.pathname = `/${name}`;
  await migrate(u.toString());
  await writeFile(new URL('../db/schema.sql', import.meta.url), await describeSchema(u.toString()));
  process.stdout.write('wrote db/schema.sql\n');
} finally {
  await admin(`drop database if exists ${name}`);
  await handle.release();
}
