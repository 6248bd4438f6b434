import type { Logger } from 'pino';
import type { Db } from '../../infra/db.ts';
import type { Metrics } from '../../infra/metrics.ts';
import { Problem, problem } from '../../http/errors.ts';
import { commitBatch, deviceKey, type CommitResult, type IngestCaches, type WriteRequest } from './commit.ts';
import { STATS_LATE_US } from '../../infra/cache.ts';

export interface BatcherOptions {
  /** A flush starts once this many values are queued… */
  maxBatchValues: number;
  /** …or this long after the oldest queued request arrived; 0: as soon as a flush slot is free. */
  maxWaitMs: number;
  /** Flushes in flight at once (each holds one ingest connection). */
  concurrency: number;
  /** Values queued or in flight; past this, writes are refused with 503 at once. */
  maxBufferValues: number;
  maxBufferBytes: number;
}

/**
 * Per tenant: the devices a flush wrote to, whether it may have created some, and those
 * written a reading older than STATS_LATE_US (cached stats over closed time change).
 */
export type WrittenDevices = Map<number, { devices: Set<string>; created: boolean; late: Set<string> }>;

/** Runs after a flush commits and before its requests are answered (cache eviction). */
export type AfterCommit = (written: WrittenDevices) => Promise<void>;

interface Pending {
  req: WriteRequest;
  values: number;
  bytes: number;
  resolve: (r: CommitResult) => void;
  reject: (e: unknown) => void;
}

const countValues = (req: WriteRequest) => {
  let n = 0;
  for (const r of req.readings) for (const _ in r.metrics) n++;
  return n;
};

/**
 * Group commit: concurrent write requests are coalesced into one transaction per flush,
 * and each request's promise settles only after that transaction commits (ack means
 * durable). Requests are validated before they get here, so one bad request never fails
 * others; a failed flush answers every request in it 503 and writes nothing of it.
 * The buffer is bounded: a full buffer refuses writes immediately (503 + Retry-After).
 */
export class WriteBatcher {
  private queue: Pending[] = [];
  private queuedValues = 0;
  private bufferedValues = 0;
  private bufferedBytes = 0;
  /** Flushes holding a slot (committing). */
  private inFlight = 0;
  /** Flushes whose requests are not all answered yet (committing, or evicting the cache). */
  private unsettled = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private idle: (() => void)[] = [];

  constructor(
    private readonly db: Db,
    private readonly opts: BatcherOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly caches: IngestCaches,
    private readonly afterCommit: AfterCommit | null = null,
  ) {
    metrics.ingestBufferSource.values = () => this.bufferedValues;
    metrics.ingestBufferSource.bytes = () => this.bufferedBytes;
  }

  /** Queues a request's readings; resolves once they are committed. */
  submit(req: WriteRequest, bytes: number): Promise<CommitResult> {
    if (this.closed) {
      this.metrics.ingestRejected.inc({ reason: 'closing' });
      return Promise.reject(problem('unavailable', 'The server is shutting down; retry on another instance.', {}, { retryAfterS: 1 }));
    }
    const values = countValues(req);
    const empty = this.bufferedValues === 0;
    if (!empty && (this.bufferedValues + values > this.opts.maxBufferValues || this.bufferedBytes + bytes > this.opts.maxBufferBytes)) {
      this.metrics.ingestRejected.inc({ reason: 'buffer_full' });
      return Promise.reject(
        problem('unavailable', 'The write buffer is full; nothing was written. Retry after the indicated delay.', {}, { retryAfterS: 1 }),
      );
    }
    return new Promise<CommitResult>((resolve, reject) => {
      this.queue.push({ req, values, bytes, resolve, reject });
      this.queuedValues += values;
      this.bufferedValues += values;
      this.bufferedBytes += bytes;
      this.schedule();
    });
  }

  private schedule() {
    while (this.queue.length && this.inFlight < this.opts.concurrency) {
      const due = this.opts.maxWaitMs === 0 || this.queuedValues >= this.opts.maxBatchValues || this.closed;
      if (!due) {
        this.timer ??= setTimeout(() => {
          this.timer = null;
          this.flushNow();
        }, this.opts.maxWaitMs);
        return;
      }
      this.flushNow();
    }
  }

  private flushNow() {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (!this.queue.length || this.inFlight >= this.opts.concurrency) return;
    const batch: Pending[] = [];
    let values = 0;
    while (this.queue.length && (batch.length === 0 || values + this.queue[0]!.values <= this.opts.maxBatchValues)) {
      const p = this.queue.shift()!;
      batch.push(p);
      values += p.values;
    }
    this.queuedValues -= values;
    this.inFlight++;
    this.unsettled++;
    // the slot is free once the commit is done: evicting the cache and answering overlap the next flush
    const release = () => {
      this.inFlight--;
      this.schedule();
    };
    void this.flush(batch, values, release).finally(() => {
      this.unsettled--;
      for (const p of batch) {
        this.bufferedValues -= p.values;
        this.bufferedBytes -= p.bytes;
      }
      this.schedule();
      if (!this.unsettled && !this.queue.length) for (const done of this.idle.splice(0)) done();
    });
  }

  /** Commits the batch, calls release() (the flush slot is free), then answers its requests. */
  private async flush(batch: Pending[], values: number, release: () => void) {
    const started = performance.now();
    let released = false;
    try {
      const touched = this.afterCommit && this.writtenDevices(batch);
      const outcome = await commitBatch(this.db, batch.map((p) => p.req), this.caches.metricSets, this.caches.deviceIds);
      released = true;
      release();
      // committed: a failure from here on must not answer 503
      if (touched) await this.afterCommit!(touched).catch((err) => this.log.warn({ err }, 'after-commit hook failed'));
      let written = 0;
      batch.forEach((p, i) => {
        const r = outcome[i]!;
        if (r instanceof Problem) {
          this.metrics.ingestRejected.inc({ reason: 'unknown_device' });
          p.reject(r);
        } else {
          written += r.values;
          p.resolve(r);
        }
      });
      this.metrics.readingsWritten.inc(written);
      this.metrics.ingestBatchValues.observe(values);
      this.metrics.ingestFlushSeconds.observe({ outcome: 'ok' }, (performance.now() - started) / 1000);
    } catch (err) {
      if (!released) release();
      this.metrics.ingestFlushSeconds.observe({ outcome: 'error' }, (performance.now() - started) / 1000);
      this.metrics.ingestRejected.inc({ reason: 'flush_failed' }, batch.length);
      this.log.error({ err, requests: batch.length, values }, 'ingest flush failed; its requests were answered 503');
      const p503 = problem('unavailable', 'The write could not be committed; nothing of it was written. Retry.', {}, { cause: err, retryAfterS: 1 });
      for (const p of batch) p.reject(p503);
    }
  }

  /**
   * Taken before the commit, which teaches deviceIds the devices it creates. Devices of
   * requests the commit refuses (422) are included: evicting them too is harmless.
   */
  private writtenDevices(batch: Pending[]): WrittenDevices {
    const byTenant: WrittenDevices = new Map();
    const lateBefore = Date.now() * 1000 - STATS_LATE_US;
    for (const { req } of batch) {
      let t = byTenant.get(req.tenantId);
      if (!t) byTenant.set(req.tenantId, (t = { devices: new Set(), created: false, late: new Set() }));
      for (const r of req.readings) {
        t.devices.add(r.device);
        if (r.ts < lateBefore) t.late.add(r.device);
      }
    }
    for (const [tenantId, t] of byTenant) {
      for (const d of t.devices) {
        if (this.caches.deviceIds.get(deviceKey(tenantId, d)) === undefined) {
          t.created = true; // unknown to this process: perhaps created now
          break;
        }
      }
    }
    return byTenant;
  }

  /** Stops accepting, flushes what is queued and waits for in-flight flushes. */
  async close(): Promise<void> {
    this.closed = true;
    this.schedule();
    if (this.unsettled || this.queue.length) await new Promise<void>((resolve) => this.idle.push(resolve));
  }
}
