import { Type, type Static } from 'typebox';
import { TimestampOut } from '../../http/schemas.ts';

export const EVENTS = ['session.completed', 'report.ready', 'device.created'] as const;
export type EventName = (typeof EVENTS)[number];
export const EventSchema = Type.Union([Type.Literal('session.completed'), Type.Literal('report.ready'), Type.Literal('device.created')]);

export const MAX_WEBHOOKS_PER_TENANT = 20;
export const MAX_URL_LENGTH = 2048;

export const WebhookId = Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$', description: 'Webhook id (UUID).' });
export const WebhookParams = Type.Object({ id: WebhookId }, { additionalProperties: false });

export const CreateWebhookBody = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: MAX_URL_LENGTH, description: 'An http:// or https:// URL that receives a POST per event.' }),
    events: Type.Array(EventSchema, { minItems: 1, maxItems: EVENTS.length, uniqueItems: true }),
  },
  { additionalProperties: false },
);
export type CreateWebhookBody = Static<typeof CreateWebhookBody>;

export const Webhook = Type.Object({
  id: WebhookId,
  url: Type.String(),
  events: Type.Array(EventSchema),
  created_at: TimestampOut,
});
export type Webhook = Static<typeof Webhook>;

export const CreatedWebhook = Type.Object({
  ...Webhook.properties,
  secret: Type.String({ description: 'The signing secret, shown only in this response.' }),
});

export const WebhookList = Type.Object({ items: Type.Array(Webhook) });

/** What a `webhook.deliver` job carries; checked when the job runs (jobs outlive the code that queued them). */
export const DeliveryPayload = Type.Object({
  webhook_id: WebhookId,
  delivery_id: Type.String({ minLength: 1 }),
  event: EventSchema,
  occurred_at: Type.String(),
  data: Type.Unknown(),
});
export type DeliveryPayload = Static<typeof DeliveryPayload>;
