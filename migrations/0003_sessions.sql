-- Device sessions: a window [started_at, completed_at] of one device whose readings are
-- summarised by a background job (session.summarize) once the session is completed.

create table sessions (
  -- uuid, not a sequence: ids appear alone in URLs (/v1/sessions/:id), so they must not be
  -- guessable nor reveal how many sessions other tenants run
  id           uuid primary key default gen_random_uuid(),
  tenant_id    bigint not null references tenants (id) on delete cascade,
  device_id    bigint not null references devices (id) on delete cascade,
  status       text not null default 'open'
               check (status in ('open', 'completing', 'completed', 'failed')),
  started_at   timestamptz not null default now(),
  completed_at timestamptz,
  -- per metric count, min, max, avg, first, last; duration; written by the summary job
  summary      jsonb,
  -- bumped by every write of readings into the window after completion: a summary computed
  -- from an older revision is stale, and a new summary job is queued in the same transaction
  revision     integer not null default 0,
  stale        boolean not null default false,
  error        text,
  summarized_at timestamptz,
  -- an address told once the first summary is ready (start body `email`)
  notify_email text,
  check ((status = 'open') = (completed_at is null)),
  check (completed_at is null or completed_at >= started_at)
);

-- at most one open session per device (409 on a second start)
create unique index sessions_one_open_idx on sessions (device_id) where status = 'open';
-- GET /v1/devices/:device/sessions: keyset pages, newest first
create index sessions_device_started_idx on sessions (device_id, started_at desc, id desc);
-- ingest looks up, per written device, completed windows that a new reading falls into;
-- devices without completed sessions cost one index probe
create index sessions_late_idx on sessions (device_id, completed_at) include (started_at)
  where status in ('completing', 'completed');
-- imports first check whether the tenant has any completed session at all
create index sessions_tenant_done_idx on sessions (tenant_id) where status in ('completing', 'completed');
