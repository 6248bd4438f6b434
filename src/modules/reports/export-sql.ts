import pg from 'pg';
import { TS_IN } from '../readings/repository.ts';
import { BUCKET_INTERVAL, type BucketName } from '../stats/plan.ts';

/**
 * The COPY statements a report is written with. COPY takes no bind parameters, so these
 * are generated: every value spliced in is an integer checked here or a literal escaped
 * by pg.escapeLiteral (device ids and metric names are also pattern-validated).
 */
export interface ExportSpec {
  metrics: string[];
  fromUs: number;
  toUs: number;
  bucket: BucketName | null;
  format: 'csv' | 'ndjson';
  /** The metric sets holding any of `metrics` (id → names, as in metric_sets). */
  sets: { id: number; names: string[] }[];
}

export interface ExportDevice {
  id: number;
  external_id: string;
}

function int(n: number): string {
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`);
  return String(n);
}
const lit = (text: string) => pg.escapeLiteral(text);
/** RFC 3339 in UTC with µs, whatever the session's TimeZone and DateStyle. */
const iso = (col: string) => `to_char(${col} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/**
 * A metric's value in a reading: its position in `vals` depends on the reading's metric
 * set, resolved here into one CASE per metric. Not a join with metric_sets: without a
 * join the primary-key scan's ts order reaches the output with no sort.
 */
function metricValue(metric: string, spec: ExportSpec): string {
  const branches = spec.sets
    .map((s) => ({ id: s.id, pos: s.names.indexOf(metric) }))
    .filter((s) => s.pos >= 0)
    .map((s) => ` when ${int(s.id)} then r.vals[${int(s.pos + 1)}]`)
    .join('');
  return branches ? `case r.metric_set${branches} end` : 'null::float8';
}

/** The condition on `readings r`: one device's readings in [from, to) that hold a requested metric (a PK range scan). */
function readingsOf(device: ExportDevice, spec: ExportSpec): string {
  return `r.device_id = ${int(device.id)}::int8
     and r.ts >= ${TS_IN(int(spec.fromUs))} and r.ts < ${TS_IN(int(spec.toUs))}
     and r.metric_set = any('{${spec.sets.map((s) => int(s.id)).join(',')}}'::int4[])`;
}

/** Raw rows: one line per reading, a column per requested metric (empty / absent when the reading lacks it). */
function rawRows(device: ExportDevice, spec: ExportSpec): string {
  const values = spec.metrics.map((m) => metricValue(m, spec));
  const cols =
    spec.format === 'csv'
      ? [lit(device.external_id), iso('r.ts'), ...values].join(', ')
      : `json_build_object('device', ${lit(device.external_id)}, 'ts', ${iso('r.ts')}, 'metrics',
           json_strip_nulls(json_build_object(${spec.metrics.map((m, i) => `${lit(m)}, ${values[i]}`).join(', ')})))::text`;
  return `select ${cols} from readings r where ${readingsOf(device, spec)} order by r.ts`;
}

/**
 * count/min/max/avg per (bucket, metric) of one device, columns (b, ord, metric, count,
 * min, max, avg; ord is the metric's position in the request). The one place that
 * aggregates raw readings: point it at the rollup tables once they exist.
 */
export function bucketedRows(device: ExportDevice, spec: ExportSpec): string {
  const bucket = spec.bucket!;
  const metrics = spec.metrics.map((m, i) => `(${int(i + 1)}, ${lit(m)}, ${metricValue(m, spec)})`).join(', ');
  return `select date_bin(interval '${BUCKET_INTERVAL[bucket]}', r.ts, timestamptz 'epoch') as b, k.ord, k.metric,
                 count(k.v) as count, min(k.v) as min, max(k.v) as max, avg(k.v) as avg
            from readings r
           cross join lateral (values ${metrics}) as k(ord, metric, v)
           where ${readingsOf(device, spec)}
           group by 1, 2, 3
   having count(k.v) > 0`;
}

function bucketRowsFormatted(device: ExportDevice, spec: ExportSpec): string {
  const cols =
    spec.format === 'csv'
      ? `${lit(device.external_id)}, ${iso('a.b')}, a.metric, a.count, a.min, a.max, a.avg`
      : `json_build_object('device', ${lit(device.external_id)}, 'bucket', ${iso('a.b')}, 'metric', a.metric,
           'count', a.count, 'min', a.min, 'max', a.max, 'avg', a.avg)::text`;
  return `select ${cols} from (${bucketedRows(device, spec)}) a order by a.b, a.ord`;
}

/**
 * The COPY of one device's part of the file. PostgreSQL formats every line: CSV itself,
 * NDJSON as one JSON text column through CSV mode with a quote and delimiter that JSON
 * never contains, so lines pass through unescaped.
 */
export function copyStatement(device: ExportDevice, spec: ExportSpec): string {
  const select = spec.bucket ? bucketRowsFormatted(device, spec) : rawRows(device, spec);
  const options = spec.format === 'csv' ? 'format csv' : `format csv, quote e'\\x01', delimiter e'\\x02'`;
  return `copy (${select}) to stdout with (${options})`;
}

/** The CSV header (metric names need no quoting: their pattern has no comma or quote). */
export function headerLine(spec: ExportSpec): string {
  if (spec.format !== 'csv') return '';
  return `${(spec.bucket ? ['device', 'bucket', 'metric', 'count', 'min', 'max', 'avg'] : ['device', 'ts', ...spec.metrics]).join(',')}\n`;
}
