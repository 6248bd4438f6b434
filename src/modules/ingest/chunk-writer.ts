import type pg from 'pg';
import type { Database, Db } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import * as repo from './import-repository.ts';

const HOUR_US = 3_600e6;

/** Rows for one COPY, with their keys. */
export interface Chunk {
  rows: repo.ReadingRows;
  deviceIds: number[];
  tsUs: number[];
  /** Some device's ts did not increase: a (device, ts) may repeat within the chunk. */
  unordered: boolean;
}

export const newChunk = (): Chunk => ({ rows: new repo.ReadingRows(), deviceIds: [], tsUs: [], unordered: false });

/**
 * Writes chunks: a COPY straight into readings inside a savepoint; if a row is already
 * stored (the import overlaps stored readings, or repeats one of its own earlier chunks),
 * the savepoint is rolled back and the chunk merged through a staging table instead,
 * later lines winning per metric. Each such chunk is a subtransaction with an id; past 64
 * in one transaction PostgreSQL's per-backend cache of them overflows and every other
 * session's visibility checks get slower while it runs. So after `maxSavepoints` chunks
 * (48 by default: a million rows or so),
 * a chunk is first checked for stored readings in its devices' spans instead (an index
 * probe per device): merged if there are, COPYed without a savepoint if not. Then the
 * chunk's late hours are marked for the rollups.
 */
export class ChunkWriter {
  private staging = false;
  private savepointOpen = false;
  private savepoints = 0;

  constructor(
    private readonly database: Database,
    private readonly client: pg.PoolClient,
    private readonly tx: Db,
    private readonly pendingUs: number | null,
    private readonly maxSavepoints: number,
  ) {}

  /**
   * Writes the chunk, then opens the next chunk's savepoint already: its round trip
   * overlaps the parsing of that chunk instead of delaying its COPY.
   */
  async write(chunk: Chunk): Promise<void> {
    const ranks = chunk.unordered ? rankRepeats(chunk) : null;
    if (this.savepoints >= this.maxSavepoints) {
      if (ranks || (await this.stored(chunk))) await this.merge(chunk, ranks);
      else await this.copyUnguarded(chunk);
      await this.markLate(chunk);
      return;
    }
    if (!this.savepointOpen) await repo.nextSavepoint(this.database, this.client, false);
    this.savepointOpen = true;
    this.savepoints++;
    if (ranks || !(await this.copyDirect(chunk))) await this.merge(chunk, ranks);
    await this.markLate(chunk);
    if (this.savepoints < this.maxSavepoints) await repo.nextSavepoint(this.database, this.client, true);
    else await this.leaveSavepoint();
  }

  /** Before devices or metric sets are created: a chunk rolled back must not take them along. */
  async leaveSavepoint(): Promise<void> {
    if (this.savepointOpen) await repo.releaseSavepoint(this.tx);
    this.savepointOpen = false;
  }

  /** Whether readings are stored in the spans of the chunk's devices. */
  private async stored(chunk: Chunk): Promise<boolean> {
    const spans = new Map<number, [number, number]>();
    for (let i = 0; i < chunk.deviceIds.length; i++) {
      const d = chunk.deviceIds[i]!;
      const t = chunk.tsUs[i]!;
      const s = spans.get(d);
      if (!s) spans.set(d, [t, t]);
      else if (t < s[0]) s[0] = t;
      else if (t > s[1]) s[1] = t;
    }
    const ids = [...spans.keys()];
    return repo.storedInSpans(this.tx, ids, ids.map((d) => spans.get(d)![0]), ids.map((d) => spans.get(d)![1]));
  }

  /** A chunk checked free of stored rows; one written meanwhile by another transaction fails the import. */
  private async copyUnguarded(chunk: Chunk): Promise<void> {
    try {
      await repo.copyIn(this.database, this.client, 'import.copy_readings', repo.COPY_READINGS, chunk.rows.data());
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') throw err;
      throw problem('conflict', 'Readings for the same devices and times were written while this import ran; nothing was imported. Retry: the import then merges with them.', {}, { cause: err });
    }
  }

  /** false: a row of the chunk is already stored, and nothing of it was written. */
  private async copyDirect(chunk: Chunk): Promise<boolean> {
    try {
      await repo.copyIn(this.database, this.client, 'import.copy_readings', repo.COPY_READINGS, chunk.rows.data());
      return true;
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') throw err;
      await repo.rollbackToSavepoint(this.tx);
      return false;
    }
  }

  private async merge(chunk: Chunk, ranks: Ranks | null): Promise<void> {
    if (this.staging) await repo.truncateStaging(this.tx);
    else await repo.createStaging(this.tx);
    this.staging = true;
    if (ranks) await repo.copyIn(this.database, this.client, 'import.copy_staging', repo.COPY_STAGING_RANKED, chunk.rows.ranked(ranks.rank));
    else await repo.copyIn(this.database, this.client, 'import.copy_staging', repo.COPY_STAGING, chunk.rows.data());
    // INSERT … ON CONFLICT may touch a row only once per statement: one rank at a time
    for (let rank = 1; rank <= (ranks?.max ?? 1); rank++) await repo.mergeRank(this.tx, rank);
  }

  /** The chunk's distinct (device, hour) pairs below the rollup watermark's target. */
  private async markLate(chunk: Chunk): Promise<void> {
    const pending = this.pendingUs;
    if (pending === null) return;
    const seen = new Set<string>();
    const pairs: [number, number][] = [];
    for (let i = 0; i < chunk.tsUs.length; i++) {
      const t = chunk.tsUs[i]!;
      if (t >= pending) continue;
      const d = chunk.deviceIds[i]!;
      const hour = Math.floor(t / HOUR_US) * HOUR_US;
      const k = `${d}:${hour}`;
      if (seen.has(k)) continue;
      seen.add(k);
      pairs.push([d, hour]);
    }
    if (!pairs.length) return;
    pairs.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    await repo.markLateHours(this.tx, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
  }
}

interface Ranks {
  /** 1 for a (device, ts) first seen in the chunk, 2 for its first repeat, … */
  rank: Int32Array;
  max: number;
}

/** Ranks of the chunk's rows, or null when no (device, ts) repeats within it. */
function rankRepeats(chunk: Chunk): Ranks | null {
  const seen = new Map<string, number>();
  const rank = new Int32Array(chunk.rows.count);
  let max = 1;
  for (let i = 0; i < rank.length; i++) {
    const k = `${chunk.deviceIds[i]}:${chunk.tsUs[i]}`;
    const r = (seen.get(k) ?? 0) + 1;
    seen.set(k, r);
    rank[i] = r;
    if (r > max) max = r;
  }
  return max > 1 ? { rank, max } : null;
}
