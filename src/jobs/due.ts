/**
 * graphile-worker finds a job scheduled for later only when it next polls
 * (JOBS_POLL_INTERVAL_MS). A statement that schedules one a moment ahead (the window batch
 * of session summaries) also notifies this channel with the time it is due (epoch ms);
 * every job runner listens and looks for jobs then. A module of its own: the write path
 * that notifies imports no job code.
 */
export const JOBS_DUE_CHANNEL = 'pulse_jobs_due';

/** Past this, a due time is left to polling (a timer per window is meant to live a moment). */
const MAX_WAIT_MS = 60_000;

/**
 * Timers that ask the worker pools to look for jobs when a job announced on
 * JOBS_DUE_CHANNEL is due: one timer per due time, however many notifications name it.
 */
export class DueWakeups {
  private readonly timers = new Map<number, NodeJS.Timeout>();

  constructor(private readonly nudge: () => void) {}

  /** `payload`: a notification's, the epoch ms the job is due. */
  due(payload: string | undefined): void {
    const at = Number(payload);
    if (!Number.isFinite(at) || this.timers.has(at)) return;
    const wait = at - Date.now();
    if (wait > MAX_WAIT_MS) return;
    const timer = setTimeout(() => {
      this.timers.delete(at);
      this.nudge();
    }, Math.max(0, wait) + 2); // run_at is compared with the database's clock, ms-rounded here
    timer.unref();
    this.timers.set(at, timer);
  }

  clear(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
