import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type TSchema } from 'typebox';
import { Limit, problemResponses, TimestampOut } from '../http/schemas.ts';
import { JOB_STATES, listJobs, retryJob } from './admin.ts';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

const Job = Type.Object({
  id: Type.String({ description: 'Job id (a bigint, as a string).' }),
  task: Type.String(),
  state: Type.Union(JOB_STATES.map((s) => Type.Literal(s))),
  queue: Nullable(Type.String()),
  key: Nullable(Type.String()),
  payload: Type.Unknown(),
  priority: Type.Integer(),
  attempts: Type.Integer(),
  max_attempts: Type.Integer(),
  last_error: Nullable(Type.String()),
  run_at: TimestampOut,
  locked_at: Nullable(TimestampOut),
  locked_by: Nullable(Type.String()),
  created_at: TimestampOut,
  updated_at: TimestampOut,
});

const ListJobsQuery = Type.Object(
  {
    state: Type.Optional(Type.Union(JOB_STATES.map((s) => Type.Literal(s)))),
    task: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    limit: Limit(500, 100),
    cursor: Type.Optional(Type.String({ pattern: '^\\d{1,18}$', description: 'Opaque cursor from `next_cursor`.' })),
  },
  { additionalProperties: false },
);
const JobParams = Type.Object({ id: Type.String({ pattern: '^\\d{1,18}$' }) }, { additionalProperties: false });

/**
 * Admin view of the job queue. Jobs are not tenant-scoped (graphile-worker's queue is
 * one per database): an admin key of any tenant sees and retries every job.
 */
export const jobAdminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/admin/jobs',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Background jobs (all tenants), newest first: queued, running or failed (attempts exhausted)',
        querystring: ListJobsQuery,
        response: { 200: Type.Object({ items: Type.Array(Job), next_cursor: Nullable(Type.String()) }), ...problemResponses },
      },
    },
    async (req) => listJobs(req.db, req.query),
  );

  app.post(
    '/admin/jobs/:id/retry',
    {
      config: { scope: 'admin' },
      schema: { tags: ['admin'], summary: 'Run a queued or failed job again now, attempts reset', params: JobParams, response: { 200: Job, ...problemResponses } },
    },
    async (req) => retryJob(req.db, req.params.id),
  );
};
