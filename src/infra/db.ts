import pg from 'pg';
import client from 'prom-client';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { Metrics } from './metrics.ts';
import { arrayParams } from './pg-array.ts';

// timestamptz and int8 as they come: timestamps are parsed where needed (ts columns are
// selected as epoch microseconds), int8 ids stay strings unless a query casts them.
pg.types.setTypeParser(pg.types.builtins.INT8, (v: string) => Number(v));

export type PoolName = 'query' | 'ingest' | 'generic';

/** Accumulates the database time of one request, for Server-Timing. */
export interface QueryTiming {
  dbMs: number;
  queries: number;
}

/**
 * How a statement is planned. 'generic': on a connection with plan_cache_mode
 * force_generic_plan (the query pool's reads only; inside a transaction the hint is
 * ignored) — for a statement whose planning costs more than a plan fitted to its
 * arguments saves, and whose generic plan was measured as good for every argument.
 */
export interface QueryOptions {
  plan?: 'generic';
}

/** What repositories take: a pool or a transaction, with every statement named. */
export interface Db {
  query<T extends object = Record<string, unknown>>(name: string, sql: string, params?: unknown[], opts?: QueryOptions): Promise<T[]>;
  /** Runs fn in one transaction on one connection; commits when it resolves. */
  tx<T>(fn: (tx: Db) => Promise<T>): Promise<T>;
  /** A view of the same pool that adds its time to `timing`. */
  timed(timing: QueryTiming): Db;
}

interface Runner {
  query(text: { name?: string; text: string; values?: unknown[] }): Promise<pg.QueryResult>;
}

/** Connections of the pool for generic-plan reads (QueryOptions): a quarter of DB_QUERY_POOL_MAX, at least 1. */
export const genericPoolMax = (config: Pick<Config, 'DB_QUERY_POOL_MAX'>) => Math.max(1, Math.ceil(config.DB_QUERY_POOL_MAX / 4));

/** After a failed transaction: roll back and return the connection, or discard it if it is broken. */
export async function rollbackAndRelease(conn: pg.PoolClient): Promise<void> {
  try {
    await conn.query('rollback');
    conn.release();
  } catch (err) {
    conn.release(err as Error); // a broken connection is discarded, not reused
  }
}

class NamedDb implements Db {
  constructor(
    private readonly owner: Database,
    private readonly pool: PoolName,
    private readonly runner: Runner | null,
    private readonly timing: QueryTiming | null,
  ) {}

  async query<T extends object>(name: string, sql: string, params: unknown[] = [], opts?: QueryOptions): Promise<T[]> {
    const pool = !this.runner && opts?.plan === 'generic' && this.pool === 'query' ? 'generic' : this.pool;
    const runner = this.runner ?? this.owner.pools[pool];
    const start = performance.now();
    let outcome = 'ok';
    try {
      // named statements are prepared once per connection: no parse or plan per request
      const res = await runner.query({ name: this.owner.statementName(name, sql), text: sql, values: arrayParams(params) });
      return res.rows as T[];
    } catch (err) {
      outcome = 'error';
      throw err;
    } finally {
      const ms = performance.now() - start;
      if (this.timing) {
        this.timing.dbMs += ms;
        this.timing.queries += 1;
      }
      this.owner.observe(name, pool, outcome, ms);
    }
  }

  async tx<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    if (this.runner) return fn(this); // already inside a transaction
    const conn = await this.owner.pools[this.pool].connect();
    const tx = new NamedDb(this.owner, this.pool, conn, this.timing);
    try {
      await tx.query('begin', 'begin');
      const result = await fn(tx);
      await tx.query('commit', 'commit');
      conn.release();
      return result;
    } catch (err) {
      await rollbackAndRelease(conn);
      throw err;
    }
  }

  timed(timing: QueryTiming): Db {
    return new NamedDb(this.owner, this.pool, this.runner, timing);
  }
}

/**
 * The connection pools (one per workload class: a bulkhead, so a flood of ingest cannot
 * take the connections reads need) and the one wrapper every statement goes through,
 * which names it for metrics and the slow-query log.
 */
export class Database {
  readonly pools: Record<PoolName, pg.Pool>;
  readonly api: Db;
  readonly ingest: Db;
  private readonly slowMs: number;

  constructor(
    readonly url: string,
    config: Config,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    const common = {
      connectionString: url,
      idleTimeoutMillis: config.DB_POOL_IDLE_MS,
      min: config.DB_POOL_MIN,
      connectionTimeoutMillis: config.DB_CONNECT_TIMEOUT_MS,
      statement_timeout: config.DB_STATEMENT_TIMEOUT_MS,
      application_name: 'pulse',
      // every statement here is meant to run in milliseconds; JIT compiles on cost estimates
      // (a generic plan over every partition looks huge) and alone took ~850 ms on fleet stats.
      // plan_cache_mode stays auto: forcing generic plans made 30-day stats 2.3x faster
      // (0.7 vs 1.6 ms) but the dashboard 4x slower (35 vs 9 ms) on the bench database;
      // measured again for stats alone (a pool of their own): a device's 30-day stats went
      // from 3.7 to 2.4 ms, but fleet stats from 2.5 to 14 ms once the rollups had grown —
      // a generic plan is fixed on estimates, and these statements' best plan depends on
      // their arguments. So a statement may ask for a generic plan (QueryOptions) where that
      // was measured as better for every argument: it then runs on the `generic` pool. (Not
      // the dashboard: its generic plan read every tenant's devices, see readings/repository.ts.)
      // Text output that SQL renders into answers (stats buckets as JSON) must not depend on
      // the server's defaults: floats in their shortest exact form (a server set to 0 would
      // round them to 15 digits), timestamps in ISO form.
      options: '-c jit=off -c extra_float_digits=1 -c DateStyle=ISO,MDY',
    };
    this.pools = {
      query: new pg.Pool({ ...common, max: config.DB_QUERY_POOL_MAX }),
      ingest: new pg.Pool({ ...common, max: config.DB_INGEST_POOL_MAX }),
      // reads that asked for a generic plan (QueryOptions): a quarter of the query pool's size
      generic: new pg.Pool({ ...common, max: genericPoolMax(config), options: `${common.options} -c plan_cache_mode=force_generic_plan` }),
    };
    for (const [name, pool] of Object.entries(this.pools)) {
      // an idle client's error (server restart) must not crash the process
      pool.on('error', (err) => log.warn({ err, pool: name }, 'idle database connection failed'));
    }
    this.slowMs = config.SLOW_QUERY_MS;
    this.api = new NamedDb(this, 'query', null, null);
    this.ingest = new NamedDb(this, 'ingest', null, null);
    const pools = this.pools;
    new client.Gauge({
      name: 'pulse_db_pool_connections',
      help: 'Pooled connections by pool and state',
      labelNames: ['pool', 'state'] as const,
      registers: [metrics.registry],
      collect() {
        for (const [name, p] of Object.entries(pools)) {
          this.set({ pool: name, state: 'in_use' }, p.totalCount - p.idleCount);
          this.set({ pool: name, state: 'idle' }, p.idleCount);
          this.set({ pool: name, state: 'waiting' }, p.waitingCount);
        }
      },
    });
  }

  private readonly statements = new Map<string, string>();

  /**
   * The prepared-statement name for a query: its own name, unless that name was already
   * used with other SQL text (generated statements), which then run unprepared.
   */
  statementName(name: string, sql: string): string | undefined {
    const known = this.statements.get(name);
    if (known === undefined) {
      this.statements.set(name, sql);
      return name;
    }
    return known === sql ? name : undefined;
  }

  /** Statements on a connection the caller checked out (and manages: begin, commit, release). */
  bind(client: pg.PoolClient, pool: PoolName): Db {
    return new NamedDb(this, pool, client, null);
  }

  observe(name: string, pool: PoolName, outcome: string, ms: number): void {
    this.metrics.dbQueries.observe({ query: name, pool, outcome }, ms / 1000);
    if (ms >= this.slowMs) this.log.warn({ query: name, pool, ms: Math.round(ms) }, 'slow query');
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.pools).map((p) => p.end()));
  }
}
