import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { DeviceParams, problemResponses } from '../../http/schemas.ts';
import { ListSessionsQuery, Session, SessionList, SessionParams, StartSessionBody } from './schemas.ts';
import * as service from './service.ts';

export const sessionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/devices/:device/sessions',
    {
      config: { scope: 'write' },
      schema: {
        tags: ['sessions'],
        summary: 'Start a session of a device (at most one open session per device: 409 otherwise)',
        params: DeviceParams,
        body: StartSessionBody,
        response: { 201: Session, ...problemResponses },
      },
    },
    async (req, reply) => {
      const session = await service.startSession(req.db, req.auth.tenant_id, req.params.device, req.body);
      return reply.code(201).header('location', `/v1/sessions/${session.id}`).send(session);
    },
  );

  app.post(
    '/sessions/:id/complete',
    {
      config: { scope: 'write' },
      schema: {
        tags: ['sessions'],
        summary: 'Complete a session; its summary is computed in the background (idempotent: a repeat gets the same answer)',
        params: SessionParams,
        response: { 202: Session, ...problemResponses },
      },
    },
    async (req, reply) => {
      const session = await service.completeSession(app.sessionCompletions, req.auth.tenant_id, req.params.id);
      return reply.code(202).header('location', `/v1/sessions/${session.id}`).send(session);
    },
  );

  app.get(
    '/sessions/:id',
    {
      config: { scope: 'read' },
      schema: { tags: ['sessions'], summary: 'A session, with its summary once computed', params: SessionParams, response: { 200: Session, ...problemResponses } },
    },
    async (req) => service.getSession(req.db, req.auth.tenant_id, req.params.id),
  );

  app.get(
    '/devices/:device/sessions',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['sessions'],
        summary: 'Sessions of a device, newest first (keyset pages)',
        params: DeviceParams,
        querystring: ListSessionsQuery,
        response: { 200: SessionList, ...problemResponses },
      },
    },
    async (req) => service.listSessions(req.db, req.auth.tenant_id, req.params.device, req.query),
  );
};
