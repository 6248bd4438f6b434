import { problem } from '../../http/errors.ts';
import type { KeyIdentity } from '../keys/repository.ts';
import { parseTimestamp } from '../readings/timestamp.ts';
import type { ReadingInput } from '../readings/types.ts';
import { checkReadings } from '../readings/validate.ts';
import type { WriteBody } from '../readings/schemas.ts';
import type { WriteBatcher } from './batcher.ts';
import type { CommitResult } from './commit.ts';
import { writeDirect } from './import.ts';
import type { FastifyInstance } from 'fastify';

export interface IngestOptions {
  maxFutureSkewUs: number;
  /** Chunks of a direct write under a savepoint (IMPORT_SAVEPOINTS). */
  maxSavepoints: number;
  /** Requests with at least this many readings are written directly (0: never). */
  directMinReadings: number;
  /** The direct path: COPY in a transaction of the request's own (src/modules/ingest/import.ts). */
  direct: ((auth: KeyIdentity, readings: ReadingInput[]) => Promise<CommitResult>) | null;
}

/** The ingest options of an app: limits, and the direct path with its cache eviction. */
export function ingestOptions(app: FastifyInstance): IngestOptions {
  const { config, database } = app.pulse;
  const base = { maxFutureSkewUs: config.MAX_FUTURE_SKEW_S * 1e6, maxSavepoints: config.IMPORT_SAVEPOINTS, directMinReadings: config.INGEST_DIRECT_MIN_READINGS };
  const direct = async (auth: KeyIdentity, readings: ReadingInput[]): Promise<CommitResult> => {
    const afterCommit = (devices: string[], created: boolean, late: string[]) => app.cache.afterWrite(auth.tenant_id, devices, created, late);
    const write = () => writeDirect(database, auth, [readings], { ...base, afterCommit, caches: app.ingestCaches });
    const { readings: n, values, devices } = await write().catch((err: unknown) => {
      if (!app.ingestCaches.deviceIds.forgetIfDeleted(err)) throw err;
      return write();
    });
    return { readings: n, values, devices };
  };
  return { ...base, direct: config.INGEST_DIRECT_MIN_READINGS > 0 ? direct : null };
}

const invalid = (errors: { index: number; detail: string }[]) =>
  problem('invalid-readings', `${errors.length >= 20 ? '20 or more' : errors.length} reading(s) are invalid; nothing was written.`, { errors });

/** JSON readings → ReadingInput, with per-item errors for unparseable timestamps. */
export function fromJson(body: WriteBody, nowUs: number): ReadingInput[] {
  const out: ReadingInput[] = new Array(body.length);
  const errors: { index: number; detail: string }[] = [];
  for (let i = 0; i < body.length; i++) {
    const r = body[i]!;
    const ts = r.ts === undefined ? nowUs : parseTimestamp(r.ts);
    if (ts === null) {
      if (errors.length < 20) errors.push({ index: i, detail: 'ts must be an RFC 3339 timestamp or epoch milliseconds' });
      continue;
    }
    out[i] = { device: r.device, ts, metrics: r.metrics as Record<string, number> };
  }
  if (errors.length) throw invalid(errors);
  return out;
}

/**
 * Validates one request's readings, then hands them to the group-commit batcher (or, when
 * they are many, writes them directly); resolves after the transaction holding them
 * commits (ack means durable). All or nothing.
 */
export async function writeReadings(
  batcher: WriteBatcher,
  auth: KeyIdentity,
  readings: ReadingInput[],
  bytes: number,
  opts: IngestOptions,
): Promise<CommitResult> {
  const errors = checkReadings(readings, { nowUs: Date.now() * 1000, maxFutureSkewUs: opts.maxFutureSkewUs });
  if (errors.length) throw invalid(errors);
  // a large request gains nothing from sharing a transaction, and COPY writes it faster
  if (opts.direct && readings.length >= opts.directMinReadings) return opts.direct(auth, readings);
  return batcher.submit({ tenantId: auth.tenant_id, autoCreate: auth.auto_create_devices, readings }, bytes);
}
