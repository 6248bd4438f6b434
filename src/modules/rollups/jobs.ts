import type { TaskList } from 'graphile-worker';
import type { JobDeps } from '../../jobs/tasks.ts';
import { refreshRollups } from './refresh.ts';

export const ROLLUPS_TASK = 'rollups.refresh';
/** A run stops refreshing after this (the next minute's run goes on), so runs do not pile up behind a backlog. */
const RUN_BUDGET_MS = 45_000;

/**
 * `rollups.refresh`, scheduled every minute: refreshes until caught up or out of budget.
 * Any number of workers may run it; the refresh's advisory lock makes all but one skip.
 */
export function rollupTasks(deps: JobDeps): TaskList {
  return {
    [ROLLUPS_TASK]: async () => {
      const deadline = Date.now() + RUN_BUDGET_MS;
      for (;;) {
        const r = await refreshRollups(deps.database.api, { lagMs: deps.config.ROLLUP_LAG_MS, metrics: deps.metrics });
        if (!r.ran || r.caughtUp || Date.now() >= deadline) return;
      }
    },
  };
}
