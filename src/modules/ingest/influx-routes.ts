import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NO_COMPRESSION_HOOK } from '../../http/cache.ts';
import { Type } from 'typebox';
import { problem } from '../../http/errors.ts';
import { problemResponses } from '../../http/schemas.ts';
import { LineProtocolError, parseLineProtocol, type Precision } from './line-protocol.ts';
import { ingestOptions, writeReadings } from './service.ts';

const PrecisionQuery = Type.Optional(
  Type.Union([Type.Literal('ns'), Type.Literal('us'), Type.Literal('ms'), Type.Literal('s'), Type.Literal('n'), Type.Literal('u')], {
    description: 'Timestamp precision of the body (default ns).',
  }),
);
const V1Query = Type.Object({ db: Type.Optional(Type.String()), rp: Type.Optional(Type.String()), precision: PrecisionQuery });
const V2Query = Type.Object({
  org: Type.Optional(Type.String()),
  orgID: Type.Optional(Type.String()),
  bucket: Type.Optional(Type.String()),
  precision: PrecisionQuery,
});

/**
 * InfluxDB 1.x (`/write`) and 2.x (`/api/v2/write`) line protocol, so Telegraf, Node-RED
 * and the official client libraries write to pulse unchanged. `db`/`bucket` name nothing
 * here (the tenant comes from the key); the device comes from a tag (LP_DEVICE_TAG).
 * Answered 204 after the points commit, like InfluxDB.
 */
export const influxRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { config } = app.pulse;
  const opts = ingestOptions(app);

  // line protocol arrives as text/plain from clients and as a form type from `curl -d`:
  // in this context every body is text
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  const handler = async (req: { body: unknown; query: { precision?: string }; headers: Record<string, unknown>; auth: never }) => {
    const p = req.query.precision ?? 'ns';
    const precision = (p === 'n' ? 'ns' : p === 'u' ? 'us' : p) as Precision;
    let readings;
    try {
      readings = parseLineProtocol(String(req.body ?? ''), {
        precision,
        deviceTag: config.LP_DEVICE_TAG,
        metricNaming: config.LP_METRIC_NAMING,
        stringFields: config.LP_STRING_FIELDS,
        nowUs: Date.now() * 1000,
      });
    } catch (err) {
      if (err instanceof LineProtocolError) {
        // `message` and `error` are where InfluxDB 2.x and 1.x clients look for the reason
        const detail = `line ${err.line}: ${err.detail}`;
        throw problem('bad-request', detail, { code: 'invalid', message: detail, error: detail, line: err.line });
      }
      throw err;
    }
    if (!readings.length) return;
    await writeReadings(app.batcher, req.auth, readings, Number(req.headers['content-length'] ?? 0), opts);
  };

  const schema = (querystring: typeof V1Query | typeof V2Query, summary: string) => ({
    tags: ['ingest'],
    summary,
    querystring,
    body: Type.String({ description: 'Line protocol, optionally `Content-Encoding: gzip`.' }),
    response: { 204: Type.Null(), ...problemResponses },
  });

  app.post('/write', { ...NO_COMPRESSION_HOOK, config: { scope: 'write' }, schema: schema(V1Query, 'InfluxDB 1.x line protocol write') }, async (req, reply) => {
    await handler(req as never);
    return reply.code(204).send(null);
  });
  app.post('/api/v2/write', { ...NO_COMPRESSION_HOOK, config: { scope: 'write' }, schema: schema(V2Query, 'InfluxDB 2.x line protocol write') }, async (req, reply) => {
    await handler(req as never);
    return reply.code(204).send(null);
  });
};
