import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { problemResponses } from '../../http/schemas.ts';
import { TOKEN_PARAM } from './link.ts';
import { CreateReportBody, DownloadQuery, ListReportsQuery, Report, ReportList, ReportParams } from './schemas.ts';
import * as service from './service.ts';

/** Whether Accept-Encoding allows gzip (`gzip`, `x-gzip` or `*`, with q > 0). */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  let star = false;
  for (const part of header.toLowerCase().split(',')) {
    const [coding, ...params] = part.trim().split(';');
    const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)).find(Boolean);
    const allowed = !q || Number(q[1]) > 0;
    if (coding === 'gzip' || coding === 'x-gzip') return allowed;
    if (coding === '*') star = allowed;
  }
  return star;
}

/** Reports need the read scope: a report exports data the key can already read. */
export const reportRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { config } = app.pulse;

  app.post(
    '/reports',
    {
      config: { scope: 'read' },
      schema: { tags: ['reports'], summary: 'Request a report (generated in the background)', body: CreateReportBody, response: { 202: Report, ...problemResponses } },
    },
    async (req, reply) => {
      const report = await service.createReport(req.db, req.auth.tenant_id, req.body, config);
      return reply.code(202).header('location', `/v1/reports/${report.id}`).send(report);
    },
  );

  app.get(
    '/reports',
    {
      config: { scope: 'read' },
      schema: { tags: ['reports'], summary: 'List reports, newest first (keyset pages)', querystring: ListReportsQuery, response: { 200: ReportList, ...problemResponses } },
    },
    async (req) => service.listReports(req.db, req.auth.tenant_id, req.query),
  );

  app.get(
    '/reports/:id',
    { config: { scope: 'read' }, schema: { tags: ['reports'], summary: 'A report and its status', params: ReportParams, response: { 200: Report, ...problemResponses } } },
    async (req) => service.toReport(await service.getReport(req.db, req.auth.tenant_id, req.params.id)),
  );

  app.get(
    '/reports/:id/download',
    {
      // the e-mailed link: `?token=` instead of the key (the auth plugin lets it through)
      config: { scope: 'read', tokenParam: TOKEN_PARAM },
      // the file is gzip already: sent as is, or decompressed here, never compressed again
      compress: false,
      schema: {
        tags: ['reports'],
        summary: 'Download a ready report (gzip passthrough when accepted); with the API key or the e-mailed link\'s token',
        params: ReportParams,
        querystring: DownloadQuery,
        response: problemResponses,
      },
    },
    async (req, reply) => {
      // req.auth is null only when the request came with a token and no Authorization header
      const byLink = req.auth === null;
      const file = byLink
        ? await service.openDownloadByToken(req.db, req.params.id, req.query.token ?? '', config.REPORTS_DIR)
        : await service.openDownload(req.db, req.auth.tenant_id, req.params.id, config.REPORTS_DIR);
      // a bearer URL: no shared cache may keep what it unlocks
      if (byLink) reply.header('cache-control', 'private, no-store');
      reply
        .header('content-type', file.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson')
        .header('content-disposition', `attachment; filename="${file.filename}"`)
        .header('vary', 'accept-encoding');
      if (acceptsGzip(req.headers['accept-encoding'])) {
        return reply.header('content-encoding', 'gzip').header('content-length', file.size).send(file.stream);
      }
      // a failed read or a corrupt file destroys the gunzip stream, which aborts the response
      return reply.send(pipeline(file.stream, createGunzip(), () => {}));
    },
  );
};
