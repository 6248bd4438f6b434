import { Type, type Static } from 'typebox';
import { Cursor, DeviceId, Limit, MetricName, Timestamp, TimestampOut } from '../../http/schemas.ts';
import { EmailAddress } from '../../infra/mail.ts';
import { Bucket } from '../stats/schemas.ts';

export const ReportStatus = Type.Union([
  Type.Literal('queued'),
  Type.Literal('running'),
  Type.Literal('ready'),
  Type.Literal('failed'),
  Type.Literal('expired'),
]);
export const Format = Type.Union([Type.Literal('csv'), Type.Literal('ndjson')]);
const DeviceStatus = Type.Union([Type.Literal('active'), Type.Literal('inactive'), Type.Literal('any')]);

export const ReportId = Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$', description: 'Report id (UUID).' });
export const ReportParams = Type.Object({ id: ReportId }, { additionalProperties: false });

// the counts are bounded again by REPORT_MAX_DEVICES / REPORT_MAX_METRICS in the service;
// these caps only keep a body's parse and validation cheap
export const CreateReportBody = Type.Object(
  {
    devices: Type.Optional(Type.Array(DeviceId, { minItems: 1, maxItems: 1_000_000, uniqueItems: true, description: 'These devices (or `status`, not both).' })),
    status: Type.Optional(DeviceStatus),
    metrics: Type.Array(MetricName, { minItems: 1, maxItems: 256, uniqueItems: true }),
    from: Timestamp,
    to: Timestamp,
    bucket: Type.Optional(Bucket),
    format: Format,
    email: Type.Optional(EmailAddress),
  },
  { additionalProperties: false, description: 'Without `devices` and `status`: every device of the tenant.' },
);
export type CreateReportBody = Static<typeof CreateReportBody>;

/** The request as stored in reports.params (times as epoch µs). */
export interface StoredParams {
  devices: string[] | null;
  status: 'active' | 'inactive' | null;
  metrics: string[];
  from_us: number;
  to_us: number;
  bucket: '1m' | '1h' | '1d' | null;
  format: 'csv' | 'ndjson';
  email: string | null;
}

export const Report = Type.Object({
  id: ReportId,
  status: ReportStatus,
  params: Type.Object({
    devices: Type.Optional(Type.Array(Type.String())),
    status: Type.Optional(Type.String()),
    metrics: Type.Array(Type.String()),
    from: TimestampOut,
    to: TimestampOut,
    bucket: Type.Optional(Bucket),
    format: Format,
    email: Type.Optional(Type.String()),
  }),
  rows: Type.Union([Type.Integer(), Type.Null()], { description: 'Data lines in the file (the CSV header not counted).' }),
  bytes: Type.Union([Type.Integer(), Type.Null()], { description: 'Size of the gzip file.' }),
  created_at: TimestampOut,
  finished_at: Type.Union([TimestampOut, Type.Null()]),
  expires_at: Type.Union([TimestampOut, Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
});
export type Report = Static<typeof Report>;

export const ListReportsQuery = Type.Object({ limit: Limit(100, 20), cursor: Type.Optional(Cursor) }, { additionalProperties: false });
export type ListReportsQuery = Static<typeof ListReportsQuery>;
export const ReportList = Type.Object({ items: Type.Array(Report), next_cursor: Type.Union([Type.String(), Type.Null()]) });

// no additionalProperties: false and no length bound, so a request with an API key is
// validated exactly as before the link existed; a malformed token is simply a wrong one (404)
export const DownloadQuery = Type.Object({
  token: Type.Optional(Type.String({ description: 'The token of the link in the "report ready" e-mail; stands in for the API key.' })),
});

export const GeneratePayload = Type.Object({ report_id: ReportId });
