import { Type, type Static } from 'typebox';
import { DeviceId, MetricName, Timestamp, TimestampOut } from '../../http/schemas.ts';

export const Bucket = Type.Union([Type.Literal('1m'), Type.Literal('1h'), Type.Literal('1d')], {
  description: 'Bucket width, aligned to the epoch (UTC minutes, hours, days).',
});

const range = {
  metric: MetricName,
  /** Inclusive; default: `to` - 1 day. */
  from: Type.Optional(Timestamp),
  /** Exclusive; default: now. */
  to: Type.Optional(Timestamp),
  bucket: Type.Optional(Bucket),
};

export const StatsQuery = Type.Object(range, { additionalProperties: false });
export type StatsQuery = Static<typeof StatsQuery>;

export const FleetStatsQuery = Type.Object(
  {
    ...range,
    status: Type.Optional(
      Type.Union([Type.Literal('active'), Type.Literal('inactive'), Type.Literal('any')], {
        default: 'active',
        description: 'Devices of this status only (as the dashboard), or `any`.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type FleetStatsQuery = Static<typeof FleetStatsQuery>;

const StatsBucket = Type.Object({
  ts: TimestampOut,
  count: Type.Integer(),
  min: Type.Number(),
  max: Type.Number(),
  avg: Type.Number(),
  sum: Type.Number(),
  first: Type.Number({ description: 'The value with the earliest ts in the bucket (on a tie between devices, the smallest).' }),
  last: Type.Number({ description: 'The value with the latest ts in the bucket (on a tie between devices, the largest).' }),
});

const series = {
  metric: Type.String(),
  bucket: Bucket,
  from: TimestampOut,
  to: TimestampOut,
  buckets: Type.Array(StatsBucket, { description: 'Buckets with at least one value, oldest first.' }),
};
export const DeviceStats = Type.Object({ device: DeviceId, ...series });
export const FleetStats = Type.Object({ status: Type.String(), ...series });
export type DeviceStats = Static<typeof DeviceStats>;
export type FleetStats = Static<typeof FleetStats>;
