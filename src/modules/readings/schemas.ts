import { Type, type Static } from 'typebox';
import { Cursor, DeviceId, Limit, MetricName, METRIC_PATTERN, Timestamp, TimestampOut } from '../../http/schemas.ts';

export const ReadingIn = Type.Object(
  {
    device: DeviceId,
    ts: Type.Optional(Timestamp),
    metrics: Type.Object(
      {},
      {
        patternProperties: { [METRIC_PATTERN]: Type.Number() },
        additionalProperties: false,
        minProperties: 1,
        maxProperties: 256,
        description: 'Metric name → finite number (1–256 metrics).',
      },
    ),
  },
  { additionalProperties: false },
);
export const WriteBody = Type.Array(ReadingIn, {
  minItems: 1,
  description: 'Up to MAX_READINGS_PER_REQUEST (default 10,000) readings, written all-or-nothing.',
});
export type WriteBody = Static<typeof WriteBody>;

export const WriteResult = Type.Object({
  readings: Type.Integer({ description: 'Readings written' }),
  values: Type.Integer({ description: 'Metric values written (after merging duplicates of the same series and ts)' }),
  devices: Type.Integer({ description: 'Distinct devices touched' }),
});

const MetricValue = Type.Object({ ts: TimestampOut, value: Type.Number() });
const AsOf = Type.String({
  format: 'date-time',
  description: 'When this answer was read from the database (RFC 3339); it may have been served from the cache since. A stale answer (the database failed) also has the header `X-Cache-Stale: true`.',
});
export const LatestOfDevice = Type.Object({
  device: DeviceId,
  metrics: Type.Record(Type.String(), MetricValue, { description: 'Metric name → newest value' }),
  as_of: AsOf,
});

export const RangeQuery = Type.Object(
  {
    metric: Type.Optional(MetricName),
    from: Type.Optional(Timestamp),
    to: Type.Optional(Timestamp),
    cursor: Type.Optional(Cursor),
    limit: Limit(10_000, 1000),
  },
  { additionalProperties: false },
);
export type RangeQuery = Static<typeof RangeQuery>;
export const RangePage = Type.Object({
  device: DeviceId,
  items: Type.Array(
    Type.Object({ ts: TimestampOut, metrics: Type.Record(Type.String(), Type.Number()) }),
    { description: 'Readings, newest first; with `metric`, only readings that have it, with only that metric.' },
  ),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
});

export const DashboardQuery = Type.Object(
  {
    status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('inactive'), Type.Literal('any')], { default: 'active' })),
    since: Type.String({ pattern: '^\\d{1,6}[smhd]$', default: '1d', description: 'Look-back window: 90s, 15m, 6h, 7d (≤ 366d).' }),
    limit: Limit(1000, 100),
  },
  { additionalProperties: false },
);
export type DashboardQuery = Static<typeof DashboardQuery>;
export const Dashboard = Type.Object({
  items: Type.Array(
    Type.Object({ device: DeviceId, ts: TimestampOut, metrics: Type.Record(Type.String(), MetricValue) }),
  ),
  as_of: AsOf,
});
