import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import type { Database, Db } from '../../infra/db.ts';
import { MARK_DIRTY, MERGE_READING, TS_IN, TS_OUT, UPSERT_LATEST, type LatestParams } from '../readings/repository.ts';

/**
 * The statements of a streaming import, all on the import's own transaction. Rows are
 * COPYed straight into readings, a chunk at a time; a chunk that collides with a stored
 * reading goes through a staging table and a merging INSERT instead.
 */

export const COPY_READINGS = 'copy readings (device_id, ts, metric_set, vals) from stdin (format binary)';
export const COPY_STAGING = 'copy import_rows (device_id, ts, metric_set, vals) from stdin (format binary)';
/** ReadingRows.ranked(): each repeat of a (device, ts) within the chunk ranked in arrival order. */
export const COPY_STAGING_RANKED = 'copy import_rows (rank, device_id, ts, metric_set, vals) from stdin (format binary)';

/**
 * One COPY … FROM STDIN of `data` on the import's connection. COPY bypasses the named
 * query wrapper, so it reports to the same metrics itself.
 */
export async function copyIn(database: Database, client: pg.PoolClient, name: string, sql: string, data: Buffer): Promise<void> {
  await observed(database, name, () => pipeline(Readable.from([data]), client.query(copyStreams.from(sql))));
}

async function observed(database: Database, name: string, run: () => Promise<unknown>): Promise<void> {
  const start = performance.now();
  let outcome = 'ok';
  try {
    await run();
  } catch (err) {
    outcome = 'error';
    throw err;
  } finally {
    database.observe(name, 'ingest', outcome, performance.now() - start);
  }
}

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const PG_EPOCH_US = 946_684_800_000_000; // 2000-01-01, where timestamptz counts from
const FLOAT8_OID = 701;
const TWO_32 = 2 ** 32;

/**
 * Rows of readings (device_id int8, ts timestamptz, metric_set int4, vals float8[]) in
 * COPY's binary format: no numbers or times are formatted here, nor parsed by PostgreSQL.
 */
export class ReadingRows {
  private buf = Buffer.allocUnsafe(256 * 1024);
  private pos = 0;
  /** Where each row starts. */
  private readonly starts: number[] = [];

  constructor() {
    SIGNATURE.copy(this.buf, 0);
    this.buf.writeInt32BE(0, 11); // flags
    this.buf.writeInt32BE(0, 15); // header extension length
    this.pos = 19;
  }

  get count(): number {
    return this.starts.length;
  }

  /** A row whose values are `metrics[names[i]]`, in that order. */
  add(deviceId: number, tsUs: number, setId: number, names: readonly string[], metrics: Record<string, number>): void {
    const n = names.length;
    this.reserve(62 + 12 * n);
    const b = this.buf;
    let p = this.pos;
    this.starts.push(p);
    b.writeInt16BE(4, p);
    b.writeInt32BE(8, p + 2);
    int64(b, p + 6, deviceId);
    b.writeInt32BE(8, p + 14);
    int64(b, p + 18, tsUs - PG_EPOCH_US);
    b.writeInt32BE(4, p + 26);
    b.writeInt32BE(setId, p + 30);
    // a one-dimensional array without nulls, lower bound 1
    b.writeInt32BE(20 + 12 * n, p + 34);
    b.writeInt32BE(1, p + 38);
    b.writeInt32BE(0, p + 42);
    b.writeInt32BE(FLOAT8_OID, p + 46);
    b.writeInt32BE(n, p + 50);
    b.writeInt32BE(1, p + 54);
    p += 58;
    for (let i = 0; i < n; i++) {
      const v = metrics[names[i]!]!;
      b.writeInt32BE(8, p);
      // -0 stored as 0, as every text path (String(-0) is '0') stores it
      b.writeDoubleBE(v === 0 ? 0 : v, p + 4);
      p += 12;
    }
    this.pos = p;
  }

  /** The COPY data for COPY_READINGS or COPY_STAGING. */
  data(): Buffer {
    this.buf.writeInt16BE(-1, this.pos); // reserved with each row
    return this.buf.subarray(0, this.pos + 2);
  }

  /** The COPY data for COPY_STAGING_RANKED: each row led by its rank. */
  ranked(ranks: Int32Array): Buffer {
    const out = Buffer.allocUnsafe(this.pos + 10 * this.starts.length + 2);
    this.buf.copy(out, 0, 0, 19);
    let p = 19;
    for (let i = 0; i < this.starts.length; i++) {
      const from = this.starts[i]!;
      const to = i + 1 < this.starts.length ? this.starts[i + 1]! : this.pos;
      out.writeInt16BE(5, p);
      out.writeInt32BE(4, p + 2);
      out.writeInt32BE(ranks[i]!, p + 6);
      p += 10 + this.buf.copy(out, p + 10, from + 2, to);
    }
    out.writeInt16BE(-1, p);
    return out.subarray(0, p + 2);
  }

  /** Room for `bytes` more, and the trailer. */
  private reserve(bytes: number): void {
    if (this.pos + bytes + 2 <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + bytes + 2));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }
}

/** A safe integer as a big-endian int64. */
function int64(b: Buffer, p: number, x: number): void {
  const hi = Math.floor(x / TWO_32);
  b.writeInt32BE(hi, p);
  b.writeUInt32BE(x - hi * TWO_32, p + 4);
}

/** The rollup watermark's target (epoch µs; null before the first refresh): rows below it are late. */
export async function rollupPending(tx: Db): Promise<number | null> {
  const rows = await tx.query<{ pending_us: number | null }>('import.rollup_pending', `select ${TS_OUT('pending')} as pending_us from rollup_watermark`);
  return rows[0]?.pending_us ?? null;
}

/**
 * Opens the savepoint a chunk's COPY runs under (a unique violation then rolls back that
 * chunk only), releasing the previous chunk's first. Two statements in one round trip:
 * simple protocol, unprepared, so it reports to the query metrics itself as COPY does.
 */
export async function nextSavepoint(database: Database, client: pg.PoolClient, releaseFirst: boolean): Promise<void> {
  const sql = releaseFirst ? 'release savepoint import_chunk; savepoint import_chunk' : 'savepoint import_chunk';
  await observed(database, 'import.savepoint', () => client.query(sql));
}

export async function releaseSavepoint(tx: Db) {
  await tx.query('import.release_chunk', 'release savepoint import_chunk');
}

export async function rollbackToSavepoint(tx: Db) {
  await tx.query('import.rollback_chunk', 'rollback to savepoint import_chunk');
}

/**
 * Whether any reading is stored in one of the spans (device, [lo, hi] µs): a chunk whose
 * spans hold none cannot collide with stored rows. One index probe per device.
 */
export async function storedInSpans(tx: Db, deviceIds: number[], loUs: number[], hiUs: number[]): Promise<boolean> {
  const rows = await tx.query<{ found: boolean }>(
    'import.stored_in_spans',
    `select exists (
       select 1 from unnest($1::int8[], $2::int8[], $3::int8[]) as u(d, lo, hi)
        where exists (select 1 from readings r where r.device_id = u.d and r.ts >= ${TS_IN('u.lo')} and r.ts <= ${TS_IN('u.hi')})
     ) as found`,
    [deviceIds, loUs, hiUs],
  );
  return rows[0]!.found;
}

export async function createStaging(tx: Db) {
  await tx.query(
    'import.create_staging',
    `create temp table import_rows (rank int4 not null default 1, device_id int8, ts timestamptz, metric_set int4, vals float8[]) on commit drop`,
  );
}

export async function truncateStaging(tx: Db) {
  await tx.query('import.truncate_staging', 'truncate import_rows');
}

/**
 * Moves the staged rows of one rank into readings, merging with stored ones (the new
 * metrics overwrite, the others stay). In key order, as the batcher writes: concurrent
 * writers lock shared rows in one order.
 */
export async function mergeRank(tx: Db, rank: number) {
  await tx.query(
    'import.merge_chunk',
    `insert into readings as r (device_id, ts, metric_set, vals)
     select device_id, ts, metric_set, vals from import_rows where rank = $1::int4 order by device_id, ts
     ${MERGE_READING}`,
    [rank],
  );
}

/** Marks (device, hour) pairs below the rollup watermark for recomputation (src/modules/rollups); sorted, distinct. */
export async function markLateHours(tx: Db, deviceIds: number[], hoursUs: number[]) {
  await tx.query(
    'import.mark_late_hours',
    `insert into rollup_dirty (device_id, hour)
     select d, ${TS_IN('h')} from unnest($1::int8[], $2::int8[]) as u(d, h)
     ${MARK_DIRTY}`,
    [deviceIds, hoursUs],
  );
}

/** The newest value per metric of each device (LatestParams); `latest` only moves forward. */
export async function upsertLatest(tx: Db, p: LatestParams) {
  await tx.query('import.upsert_latest', UPSERT_LATEST(1), [p.devices, p.names, p.tss, p.vals, p.newestUs, p.oldestUs]);
}
