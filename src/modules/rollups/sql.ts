/**
 * SQL shared by the rollup refresh and the stats reads. Every source — a raw value, a
 * rollup row of any level — is a partial aggregate with the same columns, so one rule
 * combines them all. first/last: the value at the earliest/latest ts; on a tie (two
 * devices, same ts: only in fleet series) the smallest first and the largest last, which
 * is what combining partials in any order gives.
 */
export const AGG_COLUMNS = 'count, sum, min, max, first_ts, first_v, last_ts, last_v';

/** AGG_COLUMNS qualified by a table alias. */
export const aggOf = (alias: string) => AGG_COLUMNS.split(', ').map((c) => `${alias}.${c}`).join(', ');

export const EPOCH = "timestamptz 'epoch'";

/**
 * `src` (rows with `keys` and AGG_COLUMNS) combined into one row per `keys`. first/last:
 * the value of the least/greatest (epoch, value) pair — the earliest ts, the smallest value
 * on a tie — in one pass, without sorting the rows per key. (date_part's float8 epoch
 * keeps microsecond timestamps apart and in order.)
 */
export const combine = (keys: string, src: string) => `
  select ${keys}, sum(count)::int8 as count, sum(sum) as sum, min(min) as min, max(max) as max,
         min(first_ts) as first_ts, (min(array[date_part('epoch', first_ts), first_v]))[2] as first_v,
         max(last_ts) as last_ts, (max(array[date_part('epoch', last_ts), last_v]))[2] as last_v
    from (${src}) s
   group by ${keys}`;

/** A raw value `v` at `ts` as a partial aggregate. */
export const RAW_PARTIAL = (ts: string, v: string) => `1::int8 as count, ${v} as sum, ${v} as min, ${v} as max, ${ts} as first_ts, ${v} as first_v, ${ts} as last_ts, ${v} as last_v`;

/** ON CONFLICT: replace the row with the recomputed one. */
export const REPLACE = `do update set (${AGG_COLUMNS}) = (excluded.count, excluded.sum, excluded.min, excluded.max,
  excluded.first_ts, excluded.first_v, excluded.last_ts, excluded.last_v)`;

/** ON CONFLICT: add the aggregate of newer, disjoint data to the stored row of `table`. */
export const MERGE = (t: string) => `do update set
  count = ${t}.count + excluded.count, sum = ${t}.sum + excluded.sum,
  min = least(${t}.min, excluded.min), max = greatest(${t}.max, excluded.max),
  first_v = case when (excluded.first_ts, excluded.first_v) < (${t}.first_ts, ${t}.first_v) then excluded.first_v else ${t}.first_v end,
  first_ts = least(${t}.first_ts, excluded.first_ts),
  last_v = case when (excluded.last_ts, excluded.last_v) > (${t}.last_ts, ${t}.last_v) then excluded.last_v else ${t}.last_v end,
  last_ts = greatest(${t}.last_ts, excluded.last_ts)`;
