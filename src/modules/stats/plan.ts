export const BUCKET_US = { '1m': 60e6, '1h': 3_600e6, '1d': 86_400e6 } as const;
export type BucketName = keyof typeof BUCKET_US;
/** Each width as a PostgreSQL interval (date_bin). */
export const BUCKET_INTERVAL: Record<BucketName, string> = { '1m': '1 minute', '1h': '1 hour', '1d': '1 day' };
/** Rollup levels as the stats SQL numbers them: 1 = rollup_1m, 2 = rollup_1h, 3 = rollup_1d — each one width's rows. */
export const BUCKET_LEVEL: Record<BucketName, number> = { '1m': 1, '1h': 2, '1d': 3 };

/** The levels, coarsest first. */
const LEVELS = (Object.keys(BUCKET_US) as BucketName[]).map((b) => ({ level: BUCKET_LEVEL[b], us: BUCKET_US[b] })).sort((a, b) => b.us - a.us);
/** Late data is tracked per hour; a day row is stale when any of its hours is. */
const STALE_SPAN_US: Record<number, number> = { 1: 3_600e6, 2: 3_600e6, 3: 86_400e6 };

/** Which time ranges a stats read takes from which source, as the SQL's array parameters. */
export interface ReadPlan {
  rawFromUs: number[];
  rawToUs: number[];
  level: number[];
  levelFromUs: number[];
  levelToUs: number[];
  levelSpanUs: number[];
}

/**
 * Splits [from, to) into the largest aligned pieces the rollups can answer — rollup rows
 * no coarser than the bucket, only below the watermark `done` — and raw ranges for the
 * rest: at most one range per level on each side of the middle, plus the raw edges (less
 * than a minute each) and the time past the watermark. Every piece lies inside one bucket
 * or is a run of whole buckets, so the pieces combine per bucket exactly.
 */
export function planRead(fromUs: number, toUs: number, bucket: BucketName, doneUs: number | null): ReadPlan {
  const plan: ReadPlan = { rawFromUs: [], rawToUs: [], level: [], levelFromUs: [], levelToUs: [], levelSpanUs: [] };
  const levels = LEVELS.filter((l) => l.us <= BUCKET_US[bucket]);
  const raw = (f: number, t: number) => {
    if (f >= t) return;
    const last = plan.rawToUs.length - 1;
    if (last >= 0 && plan.rawToUs[last] === f) plan.rawToUs[last] = t;
    else {
      plan.rawFromUs.push(f);
      plan.rawToUs.push(t);
    }
  };
  const split = (f: number, t: number, i: number) => {
    if (f >= t) return;
    const l = levels[i];
    if (!l) return raw(f, t);
    const a = Math.ceil(f / l.us) * l.us;
    const b = Math.floor(t / l.us) * l.us;
    if (a >= b) return split(f, t, i + 1);
    split(f, a, i + 1);
    plan.level.push(l.level);
    plan.levelFromUs.push(a);
    plan.levelToUs.push(b);
    plan.levelSpanUs.push(STALE_SPAN_US[l.level]!);
    split(b, t, i + 1);
  };
  const covered = doneUs === null ? fromUs : Math.max(fromUs, Math.min(toUs, doneUs));
  split(fromUs, covered, 0);
  raw(covered, toUs);
  return plan;
}
