-- tables
api_keys 
devices 
latest 
metric_sets 
pulse_migrations 
readings partitioned by RANGE (ts)
readings_default 
tenants 

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
latest.device_id bigint not null
latest.metric text not null
latest.ts timestamp with time zone not null
latest.value double precision not null
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
tenants.id bigint not null identity
tenants.name text not null
tenants.auto_create_devices boolean not null default true
tenants.created_at timestamp with time zone not null default now()

-- constraints
api_keys api_keys_hash_key UNIQUE (hash)
api_keys api_keys_pkey PRIMARY KEY (id)
api_keys api_keys_scopes_check CHECK (((scopes <@ ARRAY['read'::text, 'write'::text, 'admin'::text]) AND (cardinality(scopes) > 0)))
api_keys api_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
devices devices_pkey PRIMARY KEY (id)
devices devices_status_check CHECK ((status = ANY (ARRAY['active'::text, 'inactive'::text])))
devices devices_tenant_id_external_id_key UNIQUE (tenant_id, external_id)
devices devices_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
latest latest_device_id_fkey FOREIGN KEY (device_id) REFERENCES devices(id) ON DELETE CASCADE
latest latest_pkey PRIMARY KEY (device_id, metric)
metric_sets metric_sets_names_check CHECK (((cardinality(names) >= 1) AND (cardinality(names) <= 256)))
metric_sets metric_sets_names_key UNIQUE (names)
metric_sets metric_sets_pkey PRIMARY KEY (id)
pulse_migrations pulse_migrations_pkey PRIMARY KEY (version)
readings readings_pkey PRIMARY KEY (device_id, ts)
readings_default readings_default_pkey PRIMARY KEY (device_id, ts)
tenants tenants_name_check CHECK ((name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'::text))
tenants tenants_name_key UNIQUE (name)
tenants tenants_pkey PRIMARY KEY (id)

-- indexes
CREATE INDEX api_keys_tenant_idx ON public.api_keys USING btree (tenant_id)
CREATE INDEX devices_tenant_status_idx ON public.devices USING btree (tenant_id, status, external_id)
CREATE UNIQUE INDEX api_keys_hash_key ON public.api_keys USING btree (hash)
CREATE UNIQUE INDEX api_keys_pkey ON public.api_keys USING btree (id)
CREATE UNIQUE INDEX devices_pkey ON public.devices USING btree (id)
CREATE UNIQUE INDEX devices_tenant_id_external_id_key ON public.devices USING btree (tenant_id, external_id)
CREATE UNIQUE INDEX latest_pkey ON public.latest USING btree (device_id, metric)
CREATE UNIQUE INDEX metric_sets_names_key ON public.metric_sets USING btree (names)
CREATE UNIQUE INDEX metric_sets_pkey ON public.metric_sets USING btree (id)
CREATE UNIQUE INDEX pulse_migrations_pkey ON public.pulse_migrations USING btree (version)
CREATE UNIQUE INDEX readings_default_pkey ON public.readings_default USING btree (device_id, ts)
CREATE UNIQUE INDEX readings_pkey ON ONLY public.readings USING btree (device_id, ts)
CREATE UNIQUE INDEX tenants_name_key ON public.tenants USING btree (name)
CREATE UNIQUE INDEX tenants_pkey ON public.tenants USING btree (id)

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

