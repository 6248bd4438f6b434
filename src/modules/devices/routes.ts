import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NO_COMPRESSION_HOOK } from '../../http/cache.ts';
import { Type } from 'typebox';
import { DeviceParams, problemResponses } from '../../http/schemas.ts';
import { CreateDeviceBody, Device, DeviceList, ListDevicesQuery, PatchDeviceBody } from './schemas.ts';
import * as service from './service.ts';

export const deviceRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/devices',
    {
      config: { scope: 'write' },
      schema: { tags: ['devices'], summary: 'Register a device', body: CreateDeviceBody, response: { 201: Device, ...problemResponses } },
    },
    async (req, reply) => reply.code(201).send(await service.createDevice(req.db, req.cache, req.auth.tenant_id, req.body)),
  );

  app.get(
    '/devices',
    {
      ...NO_COMPRESSION_HOOK,
      config: { scope: 'read' },
      schema: { tags: ['devices'], summary: 'List devices (keyset pages by id)', querystring: ListDevicesQuery, response: { 200: DeviceList, ...problemResponses } },
    },
    async (req, reply) => reply.sendRendered(await service.listDevices(req.db, req.cache, req.auth.tenant_id, req.query)),
  );

  app.get(
    '/devices/:device',
    {
      ...NO_COMPRESSION_HOOK,
      config: { scope: 'read' },
      schema: { tags: ['devices'], summary: 'Get a device', params: DeviceParams, response: { 200: Device, ...problemResponses } },
    },
    async (req, reply) => reply.sendRendered(await service.getDevice(req.db, req.cache, req.auth.tenant_id, req.params.device)),
  );

  app.patch(
    '/devices/:device',
    {
      config: { scope: 'write' },
      schema: { tags: ['devices'], summary: 'Change a device', params: DeviceParams, body: PatchDeviceBody, response: { 200: Device, ...problemResponses } },
    },
    async (req) => service.patchDevice(req.db, req.cache, req.auth.tenant_id, req.params.device, req.body),
  );

  app.delete(
    '/devices/:device',
    {
      config: { scope: 'write' },
      schema: { tags: ['devices'], summary: 'Delete a device with all its readings', params: DeviceParams, response: { 204: Type.Null(), ...problemResponses } },
    },
    async (req, reply) => {
      await service.deleteDevice(req.db, req.cache, req.auth.tenant_id, req.params.device);
      return reply.code(204).send(null);
    },
  );
};
