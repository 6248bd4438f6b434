import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NO_COMPRESSION_HOOK } from '../../http/cache.ts';
import type { Readable } from 'node:stream';
import { Type } from 'typebox';
import { problem } from '../../http/errors.ts';
import { problemResponses } from '../../http/schemas.ts';
import { WriteBody, WriteResult } from '../readings/schemas.ts';
import { importReadings } from './import.ts';
import { fromJson, ingestOptions, writeReadings } from './service.ts';

const STREAM_TYPES = { 'application/x-ndjson': 'ndjson', 'text/csv': 'csv' } as const;

const ImportResult = Type.Object({
  readings: Type.Integer(),
  values: Type.Integer(),
  devices: Type.Integer(),
  seconds: Type.Number(),
});

export const ingestRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { config, database } = app.pulse;
  const opts = ingestOptions(app);
  let importsRunning = 0;

  // bulk imports are streamed, never buffered: the parser gets the (decompressed) body stream
  app.addContentTypeParser(Object.keys(STREAM_TYPES), (_req, payload, done) => done(null, payload));

  app.post(
    '/readings',
    {
      ...NO_COMPRESSION_HOOK,
      config: { scope: 'write' },
      schema: {
        tags: ['ingest'],
        summary: 'Write readings: JSON (≤ 10,000, via group commit), or a streamed NDJSON / CSV import of any size',
        description:
          'JSON: one request is one transaction, answered after it commits. NDJSON (one reading per line) and CSV ' +
          '(`device,ts,metric,value` or `device,ts,<metric>,…`), optionally `Content-Encoding: gzip`, are streamed into ' +
          'PostgreSQL in constant memory: all or nothing, an error names the line.',
        body: {
          content: {
            'application/json': { schema: WriteBody },
            'application/x-www-form-urlencoded': { schema: WriteBody },
            'application/x-ndjson': { schema: Type.Unknown() },
            'text/csv': { schema: Type.Unknown() },
          },
        },
        response: { 200: Type.Union([WriteResult, ImportResult]), ...problemResponses },
      },
      // the count limit is a 413 (too much), not a schema error
      preValidation: async (req) => {
        if (Array.isArray(req.body) && req.body.length > config.MAX_READINGS_PER_REQUEST) {
          throw problem('payload-too-large', `At most ${config.MAX_READINGS_PER_REQUEST} readings per request (got ${req.body.length}); stream larger sets as NDJSON or CSV.`);
        }
      },
    },
    async (req) => {
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase() as keyof typeof STREAM_TYPES;
      const format = STREAM_TYPES[type];
      if (!format) {
        const body = req.body as WriteBody;
        return writeReadings(app.batcher, req.auth, fromJson(body, Date.now() * 1000), Number(req.headers['content-length'] ?? 0), opts);
      }
      if (importsRunning >= config.IMPORT_CONCURRENCY) {
        (req.body as Readable).resume();
        throw problem('unavailable', `${config.IMPORT_CONCURRENCY} imports are already running; retry later.`, {}, { retryAfterS: 5 });
      }
      importsRunning++;
      try {
        const tenantId = req.auth.tenant_id;
        const afterCommit = (devices: string[], created: boolean, late: string[]) => app.cache.afterWrite(tenantId, devices, created, late);
        return await importReadings(database, req.auth, format, req.body as Readable, { ...opts, afterCommit });
      } finally {
        importsRunning--;
      }
    },
  );
};
