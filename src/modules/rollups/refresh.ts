import type { Db } from '../../infra/db.ts';
import type { Metrics } from '../../infra/metrics.ts';
import { nowUs } from '../../lib/time.ts';
import * as repo from './repository.ts';

const MINUTE_US = 60e6;
const DAY_US = 86_400e6;

export interface RefreshOptions {
  /** Epoch µs; default: the clock. */
  nowUs?: number;
  /** How far behind now the watermark stays (ROLLUP_LAG_MS). */
  lagMs?: number;
  /** Watermark transactions per run, each at most one UTC day of readings. */
  maxChunks?: number;
  /** Late-data transactions per run, each at most `dirtyHours` distinct hours. */
  maxDirtyBatches?: number;
  dirtyHours?: number;
  /** How long a run waits for transactions older than the new target to end. */
  settleMs?: number;
  metrics?: Metrics;
}

export interface RefreshResult {
  /** false: another process was refreshing, nothing was done. */
  ran: boolean;
  /** Rollups hold every reading before this (epoch µs), null before the first run. */
  doneUs: number | null;
  pendingUs: number | null;
  chunks: number;
  recomputedHours: number;
  /** The watermark reached its target and no late data is left: calling again now does nothing. */
  caughtUp: boolean;
}

const floorTo = (us: number, step: number) => Math.floor(us / step) * step;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One incremental refresh: advances the watermark over closed time (up to now - lag, in
 * whole minutes) and recomputes the hours that received late data. Bounded: at most
 * `maxChunks` + `maxDirtyBatches` transactions, each under a transaction-level advisory
 * lock, so concurrent callers in several processes skip instead of double counting.
 *
 * The watermark moves in two steps so that no reading is missed: `pending` (the target)
 * is committed first — from then on writers mark readings below it as late — and `done`
 * moves to it only once every transaction that began before that commit has ended.
 */
export async function refreshRollups(db: Db, opts: RefreshOptions = {}): Promise<RefreshResult> {
  const started = performance.now();
  try {
    const result = await refresh(db, opts);
    opts.metrics?.rollupRefreshRuns.inc({ outcome: result.ran ? 'ok' : 'skipped' });
    if (result.doneUs !== null) opts.metrics?.rollupLagSeconds.set(((opts.nowUs ?? nowUs()) - result.doneUs) / 1e6);
    return result;
  } catch (err) {
    opts.metrics?.rollupRefreshRuns.inc({ outcome: 'error' });
    throw err;
  } finally {
    opts.metrics?.rollupRefreshSeconds.observe((performance.now() - started) / 1000);
  }
}

async function refresh(db: Db, opts: RefreshOptions): Promise<RefreshResult> {
  const target = floorTo((opts.nowUs ?? nowUs()) - (opts.lagMs ?? 60_000) * 1000, MINUTE_US);
  const skipped = { ran: false, doneUs: null, pendingUs: null, chunks: 0, recomputedHours: 0, caughtUp: false };

  // 1. a new target, once the previous one is reached
  const w = await db.tx(async (tx) => {
    if (!(await repo.tryLock(tx))) return null;
    const w = await repo.lockWatermark(tx);
    const reached = w.pending_us === null || w.done_us === w.pending_us;
    if (reached && (w.pending_us === null || w.pending_us < target)) {
      await repo.setPending(tx, target);
      return { ...w, pending_us: target, pending_at_us: null };
    }
    return w;
  });
  if (!w) return skipped;
  let pendingAt = w.pending_at_us;
  if (pendingAt === null) {
    pendingAt = await db.tx(async (tx) => ((await repo.tryLock(tx)) ? repo.markPendingVisible(tx) : null));
    if (pendingAt === null) return skipped;
  }

  // 2. wait (briefly) for writers that may not have seen the target
  const settleUntil = performance.now() + (opts.settleMs ?? 1000);
  let settled = !(await repo.olderTransactionsRunning(db, pendingAt));
  while (!settled && performance.now() < settleUntil) {
    await sleep(25);
    settled = !(await repo.olderTransactionsRunning(db, pendingAt));
  }

  // 3. advance, a UTC day at most per transaction
  let chunks = 0;
  let doneUs = w.done_us;
  while (settled && chunks < (opts.maxChunks ?? 8)) {
    const step = await db.tx(async (tx) => {
      if (!(await repo.tryLock(tx))) return null;
      const cur = await repo.lockWatermark(tx);
      // another process moved on to a newer target, not yet known to be safe
      if (cur.pending_at_us !== pendingAt || cur.pending_us === null) return null;
      const from = cur.done_us ?? Math.min((await repo.firstReadingHour(tx)) ?? cur.pending_us, cur.pending_us);
      if (from >= cur.pending_us) {
        if (cur.done_us === null) await repo.setDone(tx, cur.pending_us);
        return { done: cur.pending_us, advanced: false };
      }
      const to = Math.min(cur.pending_us, floorTo(from, DAY_US) + DAY_US);
      await repo.setBatchLimits(tx);
      await repo.registerMetrics(tx);
      await repo.advance(tx, from, to);
      await repo.setDone(tx, to);
      return { done: to, advanced: true };
    });
    if (!step) break;
    doneUs = step.done;
    if (!step.advanced) break;
    chunks++;
  }

  // 4. late data: recompute the marked hours below the watermark
  let recomputedHours = 0;
  let batches = 0;
  let dirtyLeft = doneUs !== null;
  const hoursPerBatch = opts.dirtyHours ?? 24;
  while (dirtyLeft && batches < (opts.maxDirtyBatches ?? 8)) {
    const n = await db.tx(async (tx) => {
      if (!(await repo.tryLock(tx))) return null;
      const cur = await repo.lockWatermark(tx);
      if (cur.done_us === null) return 0;
      const b = await repo.dirtyBatch(tx, cur.done_us, hoursPerBatch);
      if (!b.deviceIds.length && !b.tenantIds.length) return 0;
      await repo.setBatchLimits(tx);
      if (b.deviceIds.length) await repo.recomputeDevices(tx, b.deviceIds, b.deviceHoursUs, cur.done_us);
      await repo.recomputeFleet(tx, b);
      await repo.clearDirty(tx, b);
      return new Set([...b.deviceHoursUs, ...b.tenantHoursUs]).size;
    });
    if (n === null) break;
    batches++;
    recomputedHours += n;
    dirtyLeft = n >= hoursPerBatch;
  }

  const caughtUp = settled && doneUs !== null && doneUs === w.pending_us && !dirtyLeft;
  return { ran: true, doneUs, pendingUs: w.pending_us, chunks, recomputedHours, caughtUp };
}
