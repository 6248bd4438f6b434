-- `latest` becomes one row per device: its metric names (sorted in byte order, as metric
-- sets are), and per name the newest value and its time (epoch µs), with the newest and the
-- oldest of those times. A write touches one row per device instead of one per (device,
-- metric): upserting the newest values of 567 devices × 3 metrics took 2.8–3.6 ms against
-- 9.8–10.1 ms for the 1,701 rows before (the benchmark database; each its own commit). The
-- dashboard orders devices by `ts` without an aggregate per device.
create table latest_per_device (
  device_id bigint primary key references devices (id) on delete cascade,
  names     text[] not null,
  tss       bigint[] not null,
  vals      double precision[] not null,
  ts        timestamptz not null,
  ts_min    timestamptz not null
) with (fillfactor = 50);

insert into latest_per_device (device_id, names, tss, vals, ts, ts_min)
select device_id,
       array_agg(metric order by metric collate "C"),
       array_agg((extract(epoch from ts) * 1000000)::int8 order by metric collate "C"),
       array_agg(value order by metric collate "C"),
       max(ts), min(ts)
  from latest
 group by device_id;

drop table latest;
alter table latest_per_device rename to latest;
alter index latest_per_device_pkey rename to latest_pkey;
alter table latest rename constraint latest_per_device_device_id_fkey to latest_device_id_fkey;

-- A device's stored newest values (o_*) merged with newer ones (n_*): per name, the value
-- with the later time wins (the new one on a tie); names of either side are kept, in byte
-- order. `ts`/`ts_min`: the newest/oldest time of a side. The same names, every new time at
-- or after every stored one: the new row as it is (3.5 µs a call). Otherwise a loop over
-- the new names, with no query unless a name is new to the device (7.6 µs a call for 3
-- names into 6, ~10–14 µs a row inside the upsert; a query would take ~20 a call). A device
-- whose readings carry different metric sets (a battery level hourly, a temperature every
-- minute) takes that loop on every write: decision 0008.
create function pulse_merge_latest(
  o_names text[], o_tss bigint[], o_vals double precision[], o_ts timestamptz,
  n_names text[], n_tss bigint[], n_vals double precision[], n_ts timestamptz, n_ts_min timestamptz,
  out names text[], out tss bigint[], out vals double precision[], out ts timestamptz, out ts_min timestamptz)
language plpgsql as $$
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
$$;

-- One row per (device, metric), as `latest` was: for people at a psql prompt, and checks.
create view latest_values as
select l.device_id, u.metric, timestamptz 'epoch' + u.t * interval '1 microsecond' as ts, u.value
  from latest l
  cross join lateral unnest(l.names, l.tss, l.vals) as u(metric, t, value);
