import { problem } from '../../http/errors.ts';
import type { KeyIdentity } from '../keys/repository.ts';
import { parseTimestamp } from '../readings/timestamp.ts';
import type { ReadingInput } from '../readings/types.ts';
import { checkReadings } from '../readings/validate.ts';
import type { WriteBody } from '../readings/schemas.ts';
import type { WriteBatcher } from './batcher.ts';
import type { CommitResult } from './commit.ts';

export interface IngestOptions {
  maxFutureSkewUs: number;
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
 * Validates one request's readings, then hands them to the group-commit batcher; resolves
 * after the transaction holding them commits (ack means durable). All or nothing.
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
  return batcher.submit({ tenantId: auth.tenant_id, autoCreate: auth.auto_create_devices, readings }, bytes);
}
