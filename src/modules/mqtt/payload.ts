import { Ajv, type ErrorObject } from 'ajv';
import { Type } from 'typebox';
import { Timestamp } from '../../http/schemas.ts';
import { ReadingIn } from '../readings/schemas.ts';
import { parseTimestamp } from '../readings/timestamp.ts';
import type { ReadingInput } from '../readings/types.ts';
import { checkReadings, type ReadingLimits } from '../readings/validate.ts';

/** Why a message was dropped; each kind is logged once (then counted). */
export type DropKind =
  | 'bad-topic'
  | 'bad-json'
  | 'bad-shape'
  | 'too-many-readings'
  | 'device-mismatch'
  | 'invalid-reading'
  | 'unknown-tenant'
  | 'unknown-device'
  | 'refused';

export type Parsed = { ok: true; readings: ReadingInput[] } | { ok: false; kind: DropKind; detail: string };

/**
 * One reading as an MQTT payload carries it: the HTTP reading, with `device` optional
 * (the topic names it; if the payload names it too, the two must agree).
 */
export const MqttReading = Type.Object(
  { device: Type.Optional(Type.String()), ts: Type.Optional(Timestamp), metrics: ReadingIn.properties.metrics },
  { additionalProperties: false },
);

// the same settings as HTTP bodies (src/http/validation.ts): no coercion, unknown properties rejected
const checkShape = new Ajv({ strict: false, allowUnionTypes: true, coerceTypes: false }).compile(MqttReading as object);

const describe = (e: ErrorObject | undefined) => {
  if (!e) return 'does not match the reading schema';
  const extra = (e.params as { additionalProperty?: string }).additionalProperty;
  if (extra) return `${e.instancePath || 'reading'} has an unknown property '${extra}'`;
  return `${e.instancePath || 'reading'} ${e.message ?? 'is invalid'}`.trim();
};

/** `<prefix>/<tenant>/devices/<device>/readings` → tenant and device, or null. */
export function parseTopic(topic: string, prefix: string): { tenant: string; device: string } | null {
  if (!topic.startsWith(`${prefix}/`)) return null;
  const parts = topic.slice(prefix.length + 1).split('/');
  if (parts.length !== 4 || parts[1] !== 'devices' || parts[3] !== 'readings' || !parts[0] || !parts[2]) return null;
  return { tenant: parts[0], device: parts[2] };
}

/**
 * A message payload (one reading `{ts?, metrics}` or a non-empty array of them) → the
 * readings of `device`, checked exactly as HTTP checks them; a missing `ts` is `nowUs`.
 */
export function parsePayload(payload: Buffer, device: string, limits: ReadingLimits & { maxReadings: number }): Parsed {
  let body: unknown;
  try {
    body = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    return { ok: false, kind: 'bad-json', detail: (err as Error).message };
  }
  const items = Array.isArray(body) ? body : [body];
  if (items.length === 0) return { ok: false, kind: 'bad-shape', detail: 'an array payload must hold at least one reading' };
  if (items.length > limits.maxReadings) {
    return { ok: false, kind: 'too-many-readings', detail: `${items.length} readings; at most ${limits.maxReadings} per message (MAX_READINGS_PER_REQUEST)` };
  }
  const readings: ReadingInput[] = new Array(items.length);
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as { device?: string; ts?: string | number; metrics: Record<string, number> };
    const at = Array.isArray(body) ? `reading ${i}: ` : '';
    if (!checkShape(item)) return { ok: false, kind: 'bad-shape', detail: at + describe(checkShape.errors?.[0]) };
    if (item.device !== undefined && item.device !== device) {
      return { ok: false, kind: 'device-mismatch', detail: `${at}device '${item.device.slice(0, 140)}' is not the topic's '${device}'` };
    }
    const ts = item.ts === undefined ? limits.nowUs : parseTimestamp(item.ts);
    if (ts === null) return { ok: false, kind: 'invalid-reading', detail: `${at}ts must be an RFC 3339 timestamp or epoch milliseconds` };
    readings[i] = { device, ts, metrics: item.metrics };
  }
  const errors = checkReadings(readings, limits, 1);
  if (errors.length) {
    const e = errors[0]!;
    return { ok: false, kind: 'invalid-reading', detail: `${Array.isArray(body) ? `reading ${e.index}: ` : ''}${e.detail}` };
  }
  return { ok: true, readings };
}
