import { Type, type Static } from 'typebox';
import { Cursor, DeviceId, Limit, TimestampOut } from '../../http/schemas.ts';

export const Status = Type.Union([Type.Literal('active'), Type.Literal('inactive')]);
const Name = Type.String({ minLength: 1, maxLength: 200 });
const Metadata = Type.Record(Type.String(), Type.Unknown(), {
  maxProperties: 100,
  description: 'Free-form JSON object (≤ 100 keys, ≤ 16 KiB).',
});

export const Device = Type.Object({
  id: DeviceId,
  name: Type.Union([Name, Type.Null()]),
  status: Status,
  metadata: Type.Record(Type.String(), Type.Unknown()),
  created_at: TimestampOut,
  updated_at: TimestampOut,
});
export type Device = Static<typeof Device>;

export const CreateDeviceBody = Type.Object(
  { id: DeviceId, name: Type.Optional(Name), status: Type.Optional(Status), metadata: Type.Optional(Metadata) },
  { additionalProperties: false },
);
export type CreateDeviceBody = Static<typeof CreateDeviceBody>;

export const PatchDeviceBody = Type.Object(
  { name: Type.Optional(Type.Union([Name, Type.Null()])), status: Type.Optional(Status), metadata: Type.Optional(Metadata) },
  { additionalProperties: false, minProperties: 1 },
);
export type PatchDeviceBody = Static<typeof PatchDeviceBody>;

export const ListDevicesQuery = Type.Object(
  { status: Type.Optional(Status), limit: Limit(1000, 100), cursor: Type.Optional(Cursor) },
  { additionalProperties: false },
);
export type ListDevicesQuery = Static<typeof ListDevicesQuery>;

export const DeviceList = Type.Object({ items: Type.Array(Device), next_cursor: Type.Union([Type.String(), Type.Null()]) });
