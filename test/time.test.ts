import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatUs, formatUsPlain } from '../src/lib/time.ts';

describe('formatUs', () => {
  it('formats every microsecond timestamp as Date#toISOString does (minute prefixes cached)', () => {
    // any µs a double holds exactly (1685–2255), and whole ms over the whole range Date
    // accepts (years outside 0000–9999 take the plain path)
    const us = fc.oneof(fc.maxSafeInteger(), fc.integer({ min: -8.64e15, max: 8.64e15 }).map((ms) => ms * 1000));
    fc.assert(fc.property(us, (t) => assert.equal(formatUs(t), formatUsPlain(t))), { numRuns: 20_000 });
    for (const t of [0, 1, 999, 1_000, -1, -1_000, 253402300799999999, 253402300800000000, -62167219200000000, -62167219200000001]) {
      assert.equal(formatUs(t), formatUsPlain(t), String(t));
    }
    assert.equal(formatUs(Date.UTC(2026, 0, 2, 3, 4, 5, 6) * 1000 + 7), '2026-01-02T03:04:05.006007Z');
    assert.equal(formatUs(Date.UTC(2026, 0, 2, 3, 4, 5) * 1000), '2026-01-02T03:04:05.000Z');
  });
});
