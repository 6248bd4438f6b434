-- tables
api_keys
devices
fleet_rollup_1d
fleet_rollup_1h
fleet_rollup_1m
fleet_rollup_dirty
latest with (fillfactor=50)
metric_sets
pulse_migrations
readings partitioned by RANGE (ts)
readings_default
reports
rollup_1d
rollup_1h
rollup_1m
rollup_dirty
rollup_metrics
rollup_watermark
sessions
tenants
webhooks

-- columns
api_keys.id bigint not null identity
api_keys.tenant_id bigint not null
api_keys.prefix text not null
api_keys.hash bytea not null
api_keys.scopes text[] not null
api_keys.name text
api_keys.created_at timestamp with time zone not null default now()
api_keys.revoked_at timestamp with time zone
devices.id bigint not null identity
devices.tenant_id bigint not null
devices.external_id text not null
devices.name text
devices.status text not null default 'active'::text
devices.metadata jsonb not null default '{}'::jsonb
devices.created_at timestamp with time zone not null default now()
devices.updated_at timestamp with time zone not null default now()
fleet_rollup_1d.tenant_id bigint not null
fleet_rollup_1d.metric_id integer not null
fleet_rollup_1d.bucket timestamp with time zone not null
fleet_rollup_1d.status text not null
fleet_rollup_1d.count bigint not null
fleet_rollup_1d.sum double precision not null
fleet_rollup_1d.min double precision not null
fleet_rollup_1d.max double precision not null
fleet_rollup_1d.first_ts timestamp with time zone not null
fleet_rollup_1d.first_v double precision not null
fleet_rollup_1d.last_ts timestamp with time zone not null
fleet_rollup_1d.last_v double precision not null
fleet_rollup_1h.tenant_id bigint not null
fleet_rollup_1h.metric_id integer not null
fleet_rollup_1h.bucket timestamp with time zone not null
fleet_rollup_1h.status text not null
fleet_rollup_1h.count bigint not null
fleet_rollup_1h.sum double precision not null
fleet_rollup_1h.min double precision not null
fleet_rollup_1h.max double precision not null
fleet_rollup_1h.first_ts timestamp with time zone not null
fleet_rollup_1h.first_v double precision not null
fleet_rollup_1h.last_ts timestamp with time zone not null
fleet_rollup_1h.last_v double precision not null
fleet_rollup_1m.tenant_id bigint not null
fleet_rollup_1m.metric_id integer not null
fleet_rollup_1m.bucket timestamp with time zone not null
fleet_rollup_1m.status text not null
fleet_rollup_1m.count bigint not null
fleet_rollup_1m.sum double precision not null
fleet_rollup_1m.min double precision not null
fleet_rollup_1m.max double precision not null
fleet_rollup_1m.first_ts timestamp with time zone not null
fleet_rollup_1m.first_v double precision not null
fleet_rollup_1m.last_ts timestamp with time zone not null
fleet_rollup_1m.last_v double precision not null
fleet_rollup_dirty.tenant_id bigint not null
fleet_rollup_dirty.hour timestamp with time zone not null
fleet_rollup_dirty.version bigint not null default 1
latest.device_id bigint not null
latest.names text[] not null
latest.tss bigint[] not null
latest.vals double precision[] not null
latest.ts timestamp with time zone not null
latest.ts_min timestamp with time zone not null
metric_sets.id integer not null identity
metric_sets.names text[] not null
pulse_migrations.version integer not null
pulse_migrations.name text not null
pulse_migrations.applied_at timestamp with time zone not null default now()
readings.device_id bigint not null
readings.ts timestamp with time zone not null
readings.metric_set integer not null
readings.vals double precision[] not null
readings_default.device_id bigint not null
readings_default.ts timestamp with time zone not null
readings_default.metric_set integer not null
readings_default.vals double precision[] not null
reports.id uuid not null default gen_random_uuid()
reports.tenant_id bigint not null
reports.params jsonb not null
reports.status text not null default 'queued'::text
reports.rows bigint
reports.bytes bigint
reports.error text
reports.created_at timestamp with time zone not null default now()
reports.finished_at timestamp with time zone
reports.expires_at timestamp with time zone
reports.download_token_hash bytea
rollup_1d.device_id bigint not null
rollup_1d.metric_id integer not null
rollup_1d.bucket timestamp with time zone not null
rollup_1d.count bigint not null
rollup_1d.sum double precision not null
rollup_1d.min double precision not null
rollup_1d.max double precision not null
rollup_1d.first_ts timestamp with time zone not null
rollup_1d.first_v double precision not null
rollup_1d.last_ts timestamp with time zone not null
rollup_1d.last_v double precision not null
rollup_1h.device_id bigint not null
rollup_1h.metric_id integer not null
rollup_1h.bucket timestamp with time zone not null
rollup_1h.count bigint not null
rollup_1h.sum double precision not null
rollup_1h.min double precision not null
rollup_1h.max double precision not null
rollup_1h.first_ts timestamp with time zone not null
rollup_1h.first_v double precision not null
rollup_1h.last_ts timestamp with time zone not null
rollup_1h.last_v double precision not null
rollup_1m.device_id bigint not null
rollup_1m.metric_id integer not null
rollup_1m.bucket timestamp with time zone not null
rollup_1m.count bigint not null
rollup_1m.sum double precision not null
rollup_1m.min double precision not null
rollup_1m.max double precision not null
rollup_1m.first_ts timestamp with time zone not null
rollup_1m.first_v double precision not null
rollup_1m.last_ts timestamp with time zone not null
rollup_1m.last_v double precision not null
rollup_dirty.device_id bigint not null
rollup_dirty.hour timestamp with time zone not null
rollup_dirty.version bigint not null default 1
rollup_metrics.id integer not null identity
rollup_metrics.name text not null
rollup_watermark.id boolean not null default true
rollup_watermark.done timestamp with time zone
rollup_watermark.pending timestamp with time zone
rollup_watermark.pending_at timestamp with time zone
sessions.id uuid not null default gen_random_uuid()
sessions.tenant_id bigint not null
sessions.device_id bigint not null
sessions.status text not null default 'open'::text
sessions.started_at timestamp with time zone not null default now()
sessions.completed_at timestamp with time zone
sessions.summary jsonb
sessions.revision integer not null default 0
sessions.stale boolean not null default false
sessions.error text
sessions.summarized_at timestamp with time zone
sessions.notify_email text
tenants.id bigint not null identity
tenants.name text not null
tenants.auto_create_devices boolean not null default true
tenants.created_at timestamp with time zone not null default now()
webhooks.id uuid not null default gen_random_uuid()
webhooks.tenant_id bigint not null
webhooks.url text not null
webhooks.events text[] not null
webhooks.secret text not null
webhooks.created_at timestamp with time zone not null default now()

-- constraints
api_keys api_keys_hash_key UNIQUE (hash)
api_keys api_keys_pkey PRIMARY KEY (id)
api_keys api_keys_scopes_check CHECK (((scopes <@ ARRAY['read'::text, 'write'::text, 'admin'::text]) AND (cardinality(scopes) > 0)))
api_keys api_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
devices devices_pkey PRIMARY KEY (id)
devices devices_status_check CHECK ((status = ANY (ARRAY['active'::text, 'inactive'::text])))
devices devices_tenant_id_external_id_key UNIQUE (tenant_id, external_id)
devices devices_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
fleet_rollup_1d fleet_rollup_1d_pkey PRIMARY KEY (tenant_id, metric_id, bucket, status) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
fleet_rollup_1d fleet_rollup_1d_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
fleet_rollup_1h fleet_rollup_1h_pkey PRIMARY KEY (tenant_id, metric_id, bucket, status) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
fleet_rollup_1h fleet_rollup_1h_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
fleet_rollup_1m fleet_rollup_1m_pkey PRIMARY KEY (tenant_id, metric_id, bucket, status) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
fleet_rollup_1m fleet_rollup_1m_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
fleet_rollup_dirty fleet_rollup_dirty_pkey PRIMARY KEY (tenant_id, hour)
latest latest_device_id_fkey FOREIGN KEY (device_id) REFERENCES devices(id) ON DELETE CASCADE
latest latest_pkey PRIMARY KEY (device_id)
metric_sets metric_sets_names_check CHECK (((cardinality(names) >= 1) AND (cardinality(names) <= 256)))
metric_sets metric_sets_names_key UNIQUE (names)
metric_sets metric_sets_pkey PRIMARY KEY (id)
pulse_migrations pulse_migrations_pkey PRIMARY KEY (version)
readings readings_pkey PRIMARY KEY (device_id, ts)
readings_default readings_default_pkey PRIMARY KEY (device_id, ts)
reports reports_pkey PRIMARY KEY (id)
reports reports_status_check CHECK ((status = ANY (ARRAY['queued'::text, 'running'::text, 'ready'::text, 'failed'::text, 'expired'::text])))
reports reports_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
rollup_1d rollup_1d_pkey PRIMARY KEY (device_id, metric_id, bucket) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
rollup_1h rollup_1h_pkey PRIMARY KEY (device_id, metric_id, bucket) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
rollup_1m rollup_1m_pkey PRIMARY KEY (device_id, metric_id, bucket)
rollup_dirty rollup_dirty_pkey PRIMARY KEY (device_id, hour)
rollup_metrics rollup_metrics_name_key UNIQUE (name)
rollup_metrics rollup_metrics_pkey PRIMARY KEY (id)
rollup_watermark rollup_watermark_id_check CHECK (id)
rollup_watermark rollup_watermark_pkey PRIMARY KEY (id)
sessions sessions_check CHECK (((status = 'open'::text) = (completed_at IS NULL)))
sessions sessions_check1 CHECK (((completed_at IS NULL) OR (completed_at >= started_at)))
sessions sessions_device_id_fkey FOREIGN KEY (device_id) REFERENCES devices(id) ON DELETE CASCADE
sessions sessions_pkey PRIMARY KEY (id)
sessions sessions_status_check CHECK ((status = ANY (ARRAY['open'::text, 'completing'::text, 'completed'::text, 'failed'::text])))
sessions sessions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
tenants tenants_name_check CHECK ((name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'::text))
tenants tenants_name_key UNIQUE (name)
tenants tenants_pkey PRIMARY KEY (id)
webhooks webhooks_events_check CHECK (((cardinality(events) > 0) AND (events <@ ARRAY['session.completed'::text, 'report.ready'::text, 'device.created'::text])))
webhooks webhooks_pkey PRIMARY KEY (id)
webhooks webhooks_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
webhooks webhooks_url_check CHECK ((url ~ '^https?://'::text))

-- indexes
CREATE INDEX api_keys_tenant_idx ON public.api_keys USING btree (tenant_id)
CREATE INDEX devices_tenant_status_idx ON public.devices USING btree (tenant_id, status, external_id)
CREATE INDEX reports_expiry_idx ON public.reports USING btree (expires_at) WHERE (status = 'ready'::text)
CREATE INDEX reports_tenant_created_idx ON public.reports USING btree (tenant_id, created_at DESC, id DESC)
CREATE INDEX sessions_device_started_idx ON public.sessions USING btree (device_id, started_at DESC, id DESC)
CREATE INDEX sessions_late_idx ON public.sessions USING btree (device_id, completed_at) INCLUDE (started_at) WHERE (status = ANY (ARRAY['completing'::text, 'completed'::text]))
CREATE INDEX webhooks_tenant_idx ON public.webhooks USING btree (tenant_id, created_at, id)
CREATE UNIQUE INDEX api_keys_hash_key ON public.api_keys USING btree (hash)
CREATE UNIQUE INDEX api_keys_pkey ON public.api_keys USING btree (id)
CREATE UNIQUE INDEX devices_pkey ON public.devices USING btree (id)
CREATE UNIQUE INDEX devices_tenant_id_external_id_key ON public.devices USING btree (tenant_id, external_id)
CREATE UNIQUE INDEX fleet_rollup_1d_pkey ON public.fleet_rollup_1d USING btree (tenant_id, metric_id, bucket, status) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
CREATE UNIQUE INDEX fleet_rollup_1h_pkey ON public.fleet_rollup_1h USING btree (tenant_id, metric_id, bucket, status) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
CREATE UNIQUE INDEX fleet_rollup_1m_pkey ON public.fleet_rollup_1m USING btree (tenant_id, metric_id, bucket, status) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
CREATE UNIQUE INDEX fleet_rollup_dirty_pkey ON public.fleet_rollup_dirty USING btree (tenant_id, hour)
CREATE UNIQUE INDEX latest_pkey ON public.latest USING btree (device_id)
CREATE UNIQUE INDEX metric_sets_names_key ON public.metric_sets USING btree (names)
CREATE UNIQUE INDEX metric_sets_pkey ON public.metric_sets USING btree (id)
CREATE UNIQUE INDEX pulse_migrations_pkey ON public.pulse_migrations USING btree (version)
CREATE UNIQUE INDEX readings_default_pkey ON public.readings_default USING btree (device_id, ts)
CREATE UNIQUE INDEX readings_pkey ON ONLY public.readings USING btree (device_id, ts)
CREATE UNIQUE INDEX reports_pkey ON public.reports USING btree (id)
CREATE UNIQUE INDEX rollup_1d_pkey ON public.rollup_1d USING btree (device_id, metric_id, bucket) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
CREATE UNIQUE INDEX rollup_1h_pkey ON public.rollup_1h USING btree (device_id, metric_id, bucket) INCLUDE (count, sum, min, max, first_ts, first_v, last_ts, last_v)
CREATE UNIQUE INDEX rollup_1m_pkey ON public.rollup_1m USING btree (device_id, metric_id, bucket)
CREATE UNIQUE INDEX rollup_dirty_pkey ON public.rollup_dirty USING btree (device_id, hour)
CREATE UNIQUE INDEX rollup_metrics_name_key ON public.rollup_metrics USING btree (name)
CREATE UNIQUE INDEX rollup_metrics_pkey ON public.rollup_metrics USING btree (id)
CREATE UNIQUE INDEX rollup_watermark_pkey ON public.rollup_watermark USING btree (id)
CREATE UNIQUE INDEX sessions_one_open_idx ON public.sessions USING btree (device_id) WHERE (status = 'open'::text)
CREATE UNIQUE INDEX sessions_pkey ON public.sessions USING btree (id)
CREATE UNIQUE INDEX tenants_name_key ON public.tenants USING btree (name)
CREATE UNIQUE INDEX tenants_pkey ON public.tenants USING btree (id)
CREATE UNIQUE INDEX webhooks_pkey ON public.webhooks USING btree (id)

-- functions
CREATE OR REPLACE FUNCTION public.pulse_ensure_partitions(p_from date, p_days integer)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
declare
  d date;
  created integer := 0;
  part text;
begin
  for i in 0 .. p_days - 1 loop
    d := p_from + i;
    part := 'readings_' || to_char(d, 'YYYYMMDD');
    continue when to_regclass(part) is not null;
    -- serialise partition creation across processes; the check is repeated under the lock
    perform pg_advisory_xact_lock(hashtext('pulse_ensure_partitions'));
    continue when to_regclass(part) is not null;
    execute format('create table %I (like readings including defaults including constraints)', part);
    execute format(
      'with moved as (delete from readings_default where ts >= %L::timestamptz and ts < %L::timestamptz returning *) '
      'insert into %I select * from moved',
      d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00', part);
    execute format(
      'alter table readings attach partition %I for values from (%L) to (%L)',
      part, d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
    created := created + 1;
  end loop;
  return created;
end;
$function$

CREATE OR REPLACE FUNCTION public.pulse_merge_latest(o_names text[], o_tss bigint[], o_vals double precision[], o_ts timestamp with time zone, n_names text[], n_tss bigint[], n_vals double precision[], n_ts timestamp with time zone, n_ts_min timestamp with time zone, OUT names text[], OUT tss bigint[], OUT vals double precision[], OUT ts timestamp with time zone, OUT ts_min timestamp with time zone)
 RETURNS record
 LANGUAGE plpgsql
AS $function$
declare
  i int;
  j int;
  t bigint;
  hi bigint;
  lo bigint;
  added boolean := false;
begin
  if o_names = n_names and o_ts <= n_ts_min then
    names := n_names; tss := n_tss; vals := n_vals; ts := n_ts; ts_min := n_ts_min;
    return;
  end if;
  names := o_names; tss := o_tss; vals := o_vals;
  for i in 1 .. cardinality(n_names) loop
    j := array_position(names, n_names[i]);
    if j is null then
      names := names || n_names[i]; tss := tss || n_tss[i]; vals := vals || n_vals[i];
      added := true;
    elsif n_tss[i] >= tss[j] then
      tss[j] := n_tss[i]; vals[j] := n_vals[i];
    end if;
  end loop;
  if added then
    select array_agg(u.n order by u.n collate "C"), array_agg(u.t order by u.n collate "C"), array_agg(u.v order by u.n collate "C")
      into names, tss, vals
      from unnest(names, tss, vals) as u(n, t, v);
  end if;
  foreach t in array tss loop
    if hi is null or t > hi then hi := t; end if;
    if lo is null or t < lo then lo := t; end if;
  end loop;
  ts := timestamptz 'epoch' + hi * interval '1 microsecond';
  ts_min := timestamptz 'epoch' + lo * interval '1 microsecond';
end;
$function$

CREATE OR REPLACE FUNCTION public.pulse_merge_reading(old_set integer, old_vals double precision[], new_set integer, new_vals double precision[], OUT metric_set integer, OUT vals double precision[])
 RETURNS record
 LANGUAGE plpgsql
AS $function$
declare
  old_names text[];
  new_names text[];
  merged text[];
begin
  if old_set = new_set then
    metric_set := new_set;
    vals := new_vals;
    return;
  end if;
  select m.names into old_names from metric_sets m where m.id = old_set;
  select m.names into new_names from metric_sets m where m.id = new_set;
  if old_names <@ new_names then
    metric_set := new_set;
    vals := new_vals;
    return;
  end if;
  -- byte order, as the application sorts names (whatever the database's collation)
  select array_agg(n order by n collate "C") into merged from (select unnest(old_names) union select unnest(new_names)) u(n);
  select array_agg(coalesce(new_vals[array_position(new_names, n)], old_vals[array_position(old_names, n)]) order by i)
    into vals from unnest(merged) with ordinality u(n, i);
  insert into metric_sets (names) values (merged) on conflict (names) do nothing;
  select m.id into metric_set from metric_sets m where m.names = merged;
end;
$function$

CREATE OR REPLACE FUNCTION public.pulse_rollup_device_changed()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
begin
  perform 1 from rollup_watermark for share;
  insert into fleet_rollup_dirty (tenant_id, hour)
  select old.tenant_id, h.bucket from rollup_1h h where h.device_id = old.id group by h.bucket order by h.bucket
  on conflict (tenant_id, hour) do update set version = fleet_rollup_dirty.version + 1;
  if tg_op = 'DELETE' then
    delete from rollup_1m where device_id = old.id;
    delete from rollup_1h where device_id = old.id;
    delete from rollup_1d where device_id = old.id;
    delete from rollup_dirty where device_id = old.id;
  end if;
  return old;
end;
$function$


-- views
latest_values as SELECT l.device_id,
    u.metric,
    ('1970-01-01 00:00:00+00'::timestamp with time zone + ((u.t)::double precision * '00:00:00.000001'::interval)) AS ts,
    u.value
   FROM (latest l
     CROSS JOIN LATERAL UNNEST(l.names, l.tss, l.vals) u(metric, t, value));
