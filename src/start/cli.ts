import { parseArgs } from 'node:util';
import pino from 'pino';
import { ConfigError, configTable, loadConfig, type Config } from '../config.ts';
import { Database } from '../infra/db.ts';
import { createMetrics } from '../infra/metrics.ts';
import { migrate } from '../infra/migrate.ts';
import { listKeys, revokeKey, setTenantAutoCreate, upsertTenant } from '../modules/keys/repository.ts';
import { createKey, parseScopes } from '../modules/keys/service.ts';
import { openDatabase } from './database.ts';
import { serve } from './server.ts';
import { seed } from '../tools/seed.ts';
import { jobsCommand } from '../jobs/admin.ts';
import { runWorkerProcess } from '../jobs/worker-process.ts';

const USAGE = `pulse — IoT telemetry backend

usage:
  pulse serve [--workers N] [--port P] [--no-worker]
                                          run the HTTP API (embedded PostgreSQL when DATABASE_URL is unset),
                                          with a background-job worker in-process unless --no-worker
  pulse worker [--port P]                 run only the background-job worker (/healthz, /readyz, /metrics on WORKER_PORT)
  pulse jobs list [--state queued|running|failed] [--task T] [--limit N]
  pulse jobs retry ID                     inspect the job queue (all tenants); run a failed job again
  pulse migrate                           apply pending migrations
  pulse keys create --tenant T --scopes read,write,admin [--name N]
                                          create an API key (printed once)
  pulse keys list [--tenant T]            list keys (never the secret)
  pulse keys revoke ID                    revoke a key
  pulse tenants set T --auto-create-devices true|false
                                          whether writes to unknown devices create them
  pulse seed [--devices 1000] [--days 30] [--interval 300] [--metrics temperature,humidity,pressure] [--tenant demo] [--key]
                                          generate a fleet's history (inside PostgreSQL, in minutes); --key prints a new read,write key
  pulse bench [--scenarios a,b] [--systems ceiling,pulse,before] [--duration 20s] [--warmup 5s]
              [--connections 50] [--workers 1] [--repeat 3] [--size tiny|small|default] [--out bench/results]
                                          side-by-side benchmark; writes report.md, report.json, chart.svg
  pulse explain                           EXPLAIN ANALYZE of the hot queries on the current database, with a verdict each
  pulse config                            print the configuration variables and defaults
`;

function fail(message: string): never {
  process.stderr.write(`pulse: ${message}\n`);
  process.exit(2);
}

/** A whole-number flag from 1 to max, or the default when absent. */
function intFlag(name: string, value: string | undefined, def: number, max: number): number {
  const n = value === undefined ? def : Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) fail(`--${name} must be an integer from 1 to ${max}`);
  return n;
}

/** Runs fn with a database (the embedded one started for the duration if needed). */
async function withDb<T>(config: Config, log: pino.Logger, fn: (db: Database) => Promise<T>): Promise<T> {
  const handle = await openDatabase(config, log);
  try {
    await migrate(handle.url);
    const database = new Database(handle.url, config, createMetrics(), log);
    try {
      return await fn(database);
    } finally {
      await database.close();
    }
  } finally {
    await handle.release();
  }
}

async function main(argv: string[]) {
  const [command, ...rest] = argv;
  if (!command || command === 'help' || command === '--help') {
    process.stdout.write(USAGE);
    return;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      workers: { type: 'string' },
      port: { type: 'string' },
      tenant: { type: 'string' },
      scopes: { type: 'string' },
      name: { type: 'string' },
      'auto-create-devices': { type: 'string' },
      'no-worker': { type: 'boolean' },
      state: { type: 'string' },
      task: { type: 'string' },
      limit: { type: 'string' },
      devices: { type: 'string' },
      days: { type: 'string' },
      interval: { type: 'string' },
      metrics: { type: 'string' },
      key: { type: 'boolean' },
      scenarios: { type: 'string' },
      systems: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      repeat: { type: 'string' },
      size: { type: 'string' },
      out: { type: 'string' },
    },
  });
  const interactive = command !== 'serve' && command !== 'worker';
  const log = pino({ level: interactive && config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL });

  switch (command) {
    case 'serve': {
      const workers = intFlag('workers', values.workers, config.WORKERS, 64);
      if (values.port !== undefined) config = loadConfig(process.env, { PORT: Number(values.port) });
      if (values['no-worker']) config = { ...config, JOBS_IN_SERVE: false };
      await serve(config, log, workers);
      return;
    }
    case 'worker': {
      if (values.port !== undefined) config = { ...config, WORKER_PORT: intFlag('port', values.port, config.WORKER_PORT, 65535) };
      await runWorkerProcess(config, log);
      return;
    }
    case 'jobs': {
      const flags = { state: values.state, task: values.task, limit: values.limit === undefined ? undefined : intFlag('limit', values.limit, 100, 500) };
      try {
        process.stdout.write(await withDb(config, log, (db) => jobsCommand(db.api, positionals, flags)));
      } catch (err) {
        fail((err as Error).message);
      }
      return;
    }
    case 'migrate': {
      const handle = await openDatabase(config, log);
      try {
        const applied = await migrate(handle.url);
        process.stdout.write(applied.length ? `applied migrations ${applied.join(', ')}\n` : 'database is up to date\n');
      } finally {
        await handle.release();
      }
      return;
    }
    case 'keys': {
      const [sub, arg] = positionals;
      if (sub === 'create') {
        if (!values.tenant) fail('keys create needs --tenant');
        let scopes;
        try {
          scopes = parseScopes(values.scopes ?? 'read,write');
        } catch (err) {
          fail((err as Error).message);
        }
        const key = await withDb(config, log, (db) => createKey(db.api, values.tenant!, scopes, values.name ?? null));
        process.stderr.write(`key ${key.id} for tenant ${values.tenant} (${scopes.join(',')}); it is shown only once:\n`);
        process.stdout.write(`${key.key}\n`);
        return;
      }
      if (sub === 'list') {
        const rows = await withDb(config, log, (db) => listKeys(db.api, values.tenant ?? null));
        for (const k of rows) {
          process.stdout.write(
            `${k.id}\t${k.tenant}\t${k.prefix}…\t${k.scopes.join(',')}\t${k.name ?? ''}\t${k.revoked_at ? 'revoked' : 'active'}\n`,
          );
        }
        return;
      }
      if (sub === 'revoke') {
        const id = Number(arg);
        if (!Number.isSafeInteger(id)) fail('keys revoke needs a key id (see keys list)');
        const hash = await withDb(config, log, (db) => revokeKey(db.api, id));
        if (!hash) fail(`no active key ${id}`);
        process.stdout.write(`revoked key ${id} (running servers forget it within AUTH_CACHE_TTL_MS)\n`);
        return;
      }
      fail('usage: pulse keys create|list|revoke');
    }
    // falls through: fail() never returns
    case 'tenants': {
      const [sub, tenant] = positionals;
      const flag = values['auto-create-devices'];
      if (sub !== 'set' || !tenant || (flag !== 'true' && flag !== 'false')) {
        fail('usage: pulse tenants set T --auto-create-devices true|false');
      }
      await withDb(config, log, async (db) => {
        await upsertTenant(db.api, tenant);
        await setTenantAutoCreate(db.api, tenant, flag === 'true');
      });
      process.stdout.write(`tenant ${tenant}: auto-create-devices=${flag}\n`);
      return;
    }
    case 'seed': {
      const opts = {
        tenant: values.tenant ?? 'demo',
        devices: intFlag('devices', values.devices, 1000, 1_000_000),
        days: intFlag('days', values.days, 30, 3660),
        intervalS: intFlag('interval', values.interval, 300, 86_400),
        metrics: (values.metrics ?? 'temperature,humidity,pressure').split(',').filter(Boolean),
      };
      // seeding statements run for seconds each: no API statement timeout here
      config = loadConfig(process.env, { DB_STATEMENT_TIMEOUT_MS: 3_600_000 });
      const started = Date.now();
      const result = await withDb(config, log, async (db) => {
        const r = await seed(db, opts, (p) => {
          process.stderr.write(`\r${p.phase.padEnd(8)} ${p.done}/${p.total}  ${p.rows.toLocaleString('en')} values   `);
        });
        const key = values.key ? (await createKey(db.api, opts.tenant, ['read', 'write'])).key : null;
        return { ...r, key };
      });
      const s = (Date.now() - started) / 1000;
      process.stderr.write(`\nseeded ${result.rows.toLocaleString('en')} values in ${s.toFixed(1)} s (${Math.round(result.rows / s).toLocaleString('en')} values/s)\n`);
      if (result.key) process.stdout.write(`${result.key}\n`);
      return;
    }
    case 'bench': {
      const seconds = (name: string, v: string | undefined, def: number) => {
        const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(v ?? String(def));
        if (!m) fail(`--${name} takes a duration such as 20s or 500ms`);
        return Number(m[1]) * (m[2] === 'ms' ? 1 : 1000);
      };
      const size = values.size ?? 'default';
      if (!['tiny', 'small', 'default'].includes(size)) fail('--size is tiny, small or default');
      const { runBench } = await import('../../bench/run.ts');
      await runBench({
        scenarios: values.scenarios ? values.scenarios.split(',') : null,
        systems: values.systems ? values.systems.split(',') : null,
        durationMs: seconds('duration', values.duration, 20),
        warmupMs: seconds('warmup', values.warmup, 5),
        connections: intFlag('connections', values.connections, 50, 10_000),
        workers: intFlag('workers', values.workers, 1, 64),
        repeat: intFlag('repeat', values.repeat, 3, 20),
        size: size as 'tiny' | 'small' | 'default',
        out: values.out ?? 'bench/results',
        command: `pulse bench ${rest.join(' ')}`.trim(),
      });
      return;
    }
    case 'explain': {
      const { explainHotQueries } = await import('../tools/explain.ts');
      process.stdout.write(await withDb(config, log, (db) => explainHotQueries(db)));
      return;
    }
    case 'config':
      process.stdout.write(`${configTable()}\n`);
      return;
    default:
      fail(`unknown command '${command}'\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`pulse: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
