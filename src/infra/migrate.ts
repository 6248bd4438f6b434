import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Logger, runMigrations } from 'graphile-worker';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** migrations/NNNN_name.sql, in version order. */
export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (f) => ({
      version: Number(f.slice(0, 4)),
      name: f.slice(5, -4),
      sql: await readFile(dir + f, 'utf8'),
    })),
  );
}

const LOCK = 'select pg_advisory_lock(hashtext($1))';
const UNLOCK = 'select pg_advisory_unlock(hashtext($1))';

/**
 * Applies pending migrations, each in its own transaction, recorded in pulse_migrations,
 * then graphile-worker's (the job queue, schema graphile_worker).
 * Forward-only. An advisory lock makes concurrent starts (cluster workers, several
 * instances) apply each migration exactly once. Returns the versions applied.
 */
export async function migrate(url: string, dir = MIGRATIONS_DIR): Promise<number[]> {
  const migrations = await loadMigrations(dir);
  const client = new pg.Client({ connectionString: url, application_name: 'pulse-migrate' });
  await client.connect();
  const applied: number[] = [];
  try {
    await client.query("set client_min_messages = 'warning'");
    await client.query(LOCK, ['pulse_migrate']);
    await client.query(`create table if not exists pulse_migrations (
      version integer primary key, name text not null, applied_at timestamptz not null default now())`);
    const done = new Set(
      (await client.query<{ version: number }>('select version from pulse_migrations')).rows.map((r) => r.version),
    );
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      try {
        await client.query('begin');
        await client.query(m.sql);
        await client.query('insert into pulse_migrations (version, name) values ($1, $2)', [m.version, m.name]);
        await client.query('commit');
        applied.push(m.version);
      } catch (err) {
        await client.query('rollback');
        throw new Error(`migration ${m.version}_${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
    }
    // the job queue's own schema (graphile_worker), versioned by graphile-worker itself
    await runMigrations({ connectionString: url, logger: quietLogger });
    await client.query(UNLOCK, ['pulse_migrate']);
  } finally {
    await client.end();
  }
  return applied;
}

const quietLogger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') process.stderr.write(`graphile-worker: ${message}\n`);
});

/** The latest version on disk, and whether the database has it (for /readyz). */
export async function latestMigrationVersion(dir = MIGRATIONS_DIR): Promise<number> {
  const all = await loadMigrations(dir);
  return all.length ? all[all.length - 1]!.version : 0;
}
