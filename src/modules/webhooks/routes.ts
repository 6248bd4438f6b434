import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { problemResponses } from '../../http/schemas.ts';
import { CreatedWebhook, CreateWebhookBody, WebhookList, WebhookParams } from './schemas.ts';
import * as service from './service.ts';

/**
 * Scope admin for all three: a webhook sends the tenant's data to any URL, so registering
 * one is an integration setting, not a data write; write keys sit on devices and agents,
 * and a leaked one must not be able to add an exfiltration endpoint or list where data goes.
 */
export const webhookRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { config } = app.pulse;

  app.post(
    '/webhooks',
    {
      config: { scope: 'admin' },
      schema: { tags: ['webhooks'], summary: 'Subscribe a URL to events (the secret is shown once)', body: CreateWebhookBody, response: { 201: CreatedWebhook, ...problemResponses } },
    },
    async (req, reply) => reply.code(201).send(await service.createWebhook(req.db, req.auth.tenant_id, req.body, config)),
  );

  app.get(
    '/webhooks',
    { config: { scope: 'admin' }, schema: { tags: ['webhooks'], summary: 'List webhooks', response: { 200: WebhookList, ...problemResponses } } },
    async (req) => service.listWebhooks(req.db, req.auth.tenant_id),
  );

  app.delete(
    '/webhooks/:id',
    {
      config: { scope: 'admin' },
      schema: { tags: ['webhooks'], summary: 'Delete a webhook (pending deliveries are dropped)', params: WebhookParams, response: { 204: Type.Null(), ...problemResponses } },
    },
    async (req, reply) => {
      await service.deleteWebhook(req.db, req.auth.tenant_id, req.params.id);
      return reply.code(204).send(null);
    },
  );
};
