import { Type } from 'typebox';

/** Schemas shared by several modules. */
export const DEVICE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$';
export const METRIC_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$';

export const DeviceId = Type.String({
  pattern: DEVICE_ID_PATTERN,
  description: 'Tenant-scoped external id, e.g. `sensor-42`: 1–128 characters of A–Z a–z 0–9 . _ : @ -',
});
export const MetricName = Type.String({
  pattern: METRIC_PATTERN,
  description: 'Metric name: 1–128 characters of A–Z a–z 0–9 _ . : / -',
});
export const DeviceParams = Type.Object({ device: DeviceId }, { additionalProperties: false });

export const Limit = (max: number, def: number) =>
  Type.Integer({ minimum: 1, maximum: max, default: def, description: `Page size, 1–${max}.` });
export const Cursor = Type.String({ minLength: 1, maxLength: 512, description: 'Opaque cursor from `next_cursor`.' });
export const Timestamp = Type.Union([Type.String({ maxLength: 64 }), Type.Number()], {
  description: 'RFC 3339 string or epoch milliseconds.',
});
/** Timestamps in responses: RFC 3339, UTC, with µs when present. */
export const TimestampOut = Type.String({ format: 'date-time' });

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    instance: Type.String(),
    request_id: Type.String(),
  },
  { additionalProperties: true, $id: 'Problem' },
);
export const problemResponses = {
  '4xx': Type.Ref('Problem'),
  '5xx': Type.Ref('Problem'),
};
