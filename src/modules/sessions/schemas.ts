import { Type, type Static } from 'typebox';
import { EmailAddress } from '../../infra/mail.ts';
import { Cursor, DeviceId, Limit, Timestamp, TimestampOut } from '../../http/schemas.ts';

export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
export const SessionId = Type.String({ pattern: UUID_PATTERN, description: 'Session id (uuid).' });
export const SessionParams = Type.Object({ id: SessionId }, { additionalProperties: false });

const MetricSummary = Type.Object({
  count: Type.Integer(),
  min: Type.Number(),
  max: Type.Number(),
  avg: Type.Number(),
  first: Type.Number(),
  last: Type.Number(),
});

export const Summary = Type.Object({
  duration_s: Type.Number({ description: 'completed_at − started_at, in seconds.' }),
  readings: Type.Integer({ description: 'Readings (rows) in the window.' }),
  metrics: Type.Record(Type.String(), MetricSummary),
});

export const Session = Type.Object({
  id: SessionId,
  device: DeviceId,
  status: Type.Union([Type.Literal('open'), Type.Literal('completing'), Type.Literal('completed'), Type.Literal('failed')]),
  started_at: TimestampOut,
  completed_at: Type.Union([TimestampOut, Type.Null()]),
  summary: Type.Union([Summary, Type.Null()], { description: 'Once computed: readings in [started_at, completed_at], per metric.' }),
  stale: Type.Boolean({ description: 'Readings were written into the window after the summary was computed; a new one is on its way.' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'Why the summary failed (status failed).' }),
});
export type Session = Static<typeof Session>;

export const StartSessionBody = Type.Union(
  [
    Type.Object(
      { started_at: Type.Optional(Timestamp), email: Type.Optional({ ...EmailAddress, description: 'Told by e-mail once the summary is ready.' }) },
      { additionalProperties: false },
    ),
    Type.Null(),
  ],
);
export type StartSessionBody = Static<typeof StartSessionBody>;

export const ListSessionsQuery = Type.Object({ limit: Limit(1000, 100), cursor: Type.Optional(Cursor) }, { additionalProperties: false });
export type ListSessionsQuery = Static<typeof ListSessionsQuery>;

export const SessionList = Type.Object({ items: Type.Array(Session), next_cursor: Type.Union([Type.String(), Type.Null()]) });
