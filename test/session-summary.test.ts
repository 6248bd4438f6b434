import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { summarize } from '../src/modules/sessions/repository.ts';

const sets: Record<number, string[]> = { 1: ['rpm', 'temp'], 2: ['pressure', 'temp'] };
const row = (ts_us: number | null, metric_set: number | null, vals: (number | null)[] | null) => ({ id: 's', revision: 0, duration_s: 60, ts_us, metric_set, vals });

describe('session summary (summarize)', () => {
  it('matches values by name across metric sets, skips nulls, and takes first/last by time whatever the row order', () => {
    const s = summarize(
      [row(3_000, 2, [-3.25, 19.75]), row(1_000, 1, [1000, 20.5]), row(2_000, 1, [null, 21]), row(4_000, 1, [null, null])],
      (m) => sets[m]!,
    );
    assert.equal(s.readings, 4);
    assert.equal(s.duration_s, 60);
    assert.deepEqual(s.metrics, {
      temp: { count: 3, min: 19.75, max: 21, avg: (20.5 + 21 + 19.75) / 3, first: 20.5, last: 19.75 },
      rpm: { count: 1, min: 1000, max: 1000, avg: 1000, first: 1000, last: 1000 },
      pressure: { count: 1, min: -3.25, max: -3.25, avg: -3.25, first: -3.25, last: -3.25 },
    });
  });

  it('a session without readings (the outer join row) has none and no metrics', () => {
    assert.deepEqual(summarize([row(null, null, null)], (m) => sets[m]!), { duration_s: 60, readings: 0, metrics: {} });
  });
});
