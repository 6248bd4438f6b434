/**
 * CPU and memory of server processes during a measurement window, from /proc (Linux).
 *
 * CPU is utime+stime from /proc/<pid>/stat. With `includeDescendants`, each root's
 * whole process tree is followed (cluster workers, PostgreSQL backends; children are
 * found through /proc/<pid>/task/<tid>/children) and each process contributes
 * utime+stime+cutime+cstime: when a child exits and is reaped, its CPU moves into its
 * parent's cutime/cstime, so the tree total is conserved and short-lived children
 * (per-connection backends) are counted in full rather than lost between samples.
 *
 * Memory is the sum of VmRSS over the tracked processes at each sample (peak and mean
 * of that sum), plus the sum of VmHWM (each process's own lifetime peak, which also
 * covers spikes between samples but may predate the window).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clockTicks: number | undefined;

/** USER_HZ: the unit of /proc/<pid>/stat times (100 on practically every Linux). */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

export interface ProcStat {
  pid: number;
  ppid: number;
  /** CPU of the process itself, clock ticks. */
  utime: number;
  stime: number;
  /** CPU of its reaped children, clock ticks. */
  cutime: number;
  cstime: number;
  /** Start time after boot, clock ticks. */
  starttime: number;
}

/** Parses the contents of /proc/<pid>/stat (comm may contain spaces and parentheses). */
export function parseProcStat(text: string): ProcStat {
  const close = text.lastIndexOf(')');
  const pid = Number.parseInt(text, 10);
  if (close < 0 || !Number.isFinite(pid)) throw new Error('not a /proc/<pid>/stat line');
  // Fields after "(comm)": index 0 is field 3 (state) in proc(5) numbering.
  const f = text.slice(close + 2).trim().split(/\s+/);
  const n = (field: number): number => Number(f[field - 3]);
  return {
    pid,
    ppid: n(4),
    utime: n(14),
    stime: n(15),
    cutime: n(16),
    cstime: n(17),
    starttime: n(22),
  };
}

export function readProcStat(pid: number): ProcStat | null {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

export interface ProcMem {
  rssBytes: number;
  hwmBytes: number;
}

export function parseProcStatusMem(text: string): ProcMem {
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rssBytes: kib('VmRSS'), hwmBytes: kib('VmHWM') };
}

export function readProcMem(pid: number): ProcMem | null {
  try {
    return parseProcStatusMem(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return null;
  }
}

/** Direct children of a process (all its threads' children). */
export function childrenOf(pid: number): number[] {
  const out = new Set<number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  for (const tid of tids) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(/\s+/)) {
        if (c !== '') out.add(Number(c));
      }
    } catch {
      /* thread gone */
    }
  }
  return [...out];
}

/** The process and every descendant, parents before children. */
export function processTree(pid: number): number[] {
  const seen = new Set<number>();
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    if (seen.has(p)) continue;
    seen.add(p);
    queue.push(...childrenOf(p));
  }
  return [...seen];
}

export interface SamplingOptions {
  /** Follow each pid's process tree (cluster workers, DB backends). Default false. */
  includeDescendants?: boolean;
  /** Leave the root pid itself out of the totals (e.g. an idle postmaster). Default false. */
  excludeRoots?: boolean;
}

export interface ProcSample {
  /** CPU over the window, % of one core (200 = two cores busy). */
  cpuPct: number;
  /** Peak over samples of the summed VmRSS of the tracked processes. */
  peakRssBytes: number;
  /** Mean over samples of the summed VmRSS. */
  meanRssBytes: number;
  /** Sum of VmHWM (per-process lifetime peak RSS) at the last sample. */
  hwmRssBytes: number;
  /** Every pid that was tracked at some sample. */
  pids: number[];
  samples: number;
  durationS: number;
}

export interface Sampler {
  stop(): ProcSample;
}

interface TreeReading {
  cpuTicks: number;
  rssBytes: number;
  hwmBytes: number;
  alive: boolean;
}

function readTree(root: number, opts: SamplingOptions, seen: Set<number>): TreeReading {
  const pids = opts.includeDescendants ? processTree(root) : [root];
  let cpuTicks = 0;
  let rssBytes = 0;
  let hwmBytes = 0;
  let alive = false;
  for (const pid of pids) {
    const isRoot = pid === root;
    const st = readProcStat(pid);
    if (st === null) continue;
    if (isRoot) alive = true;
    // A root's cutime still counts when its own CPU is excluded: that is where its
    // exited children's CPU goes.
    if (opts.includeDescendants) cpuTicks += st.cutime + st.cstime;
    if (isRoot && opts.excludeRoots) continue;
    seen.add(pid);
    cpuTicks += st.utime + st.stime;
    const mem = readProcMem(pid);
    if (mem !== null) {
      rssBytes += mem.rssBytes;
      hwmBytes += mem.hwmBytes;
    }
  }
  return { cpuTicks, rssBytes, hwmBytes, alive };
}

/**
 * Starts sampling now; `stop()` takes a last sample and returns the totals. A root that
 * exits mid-window keeps the CPU it had at its last sample.
 */
export function startSampling(pids: number[], intervalMs = 250, options: SamplingOptions = {}): Sampler {
  const roots = [...new Set(pids)];
  const seen = new Set<number>();
  const first = new Map<number, number>();
  const last = new Map<number, TreeReading>();
  let samples = 0;
  let peakRss = 0;
  let rssSum = 0;
  const t0 = process.hrtime.bigint();

  const sample = (): void => {
    let rss = 0;
    for (const root of roots) {
      const r = readTree(root, options, seen);
      if (!r.alive) continue;
      if (!first.has(root)) first.set(root, r.cpuTicks);
      last.set(root, r);
      rss += r.rssBytes;
    }
    samples++;
    rssSum += rss;
    if (rss > peakRss) peakRss = rss;
  };

  sample();
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  let result: ProcSample | undefined;

  return {
    stop(): ProcSample {
      if (result !== undefined) return result;
      clearInterval(timer);
      sample();
      const durationS = Number(process.hrtime.bigint() - t0) / 1e9;
      let ticks = 0;
      let hwm = 0;
      for (const [root, reading] of last) {
        ticks += reading.cpuTicks - (first.get(root) ?? reading.cpuTicks);
        hwm += reading.hwmBytes;
      }
      result = {
        cpuPct: durationS > 0 ? Math.round((ticks / clockTicksPerSecond() / durationS) * 1000) / 10 : 0,
        peakRssBytes: peakRss,
        meanRssBytes: samples > 0 ? Math.round(rssSum / samples) : 0,
        hwmRssBytes: hwm,
        pids: [...seen].sort((a, b) => a - b),
        samples,
        durationS: Math.round(durationS * 1000) / 1000,
      };
      return result;
    },
  };
}

/**
 * PostgreSQL's CPU: every backend and auxiliary process under the postmaster (its
 * descendants, including ones that came and went during the window), postmaster
 * itself excluded. The DB shares the cores with pulse and the load generator, so its
 * share belongs in the report.
 */
export function samplePostgres(postmasterPid: number, intervalMs = 250): Sampler {
  return startSampling([postmasterPid], intervalMs, { includeDescendants: true, excludeRoots: true });
}

/** The postmaster pid from the first line of `<data dir>/postmaster.pid`. */
export function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(`${dataDir}/postmaster.pid`, 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
