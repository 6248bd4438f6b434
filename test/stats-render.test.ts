import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BUCKET_BYTES, BUCKET_FIELDS, renderBuckets } from '../src/modules/stats/repository.ts';

type Bucket = Record<(typeof BUCKET_FIELDS)[number], number>;

/** The bytes the stats SQL sends for these buckets: seven float8 each, big-endian (float8send). */
function bytes(buckets: Bucket[]): Buffer {
  const b = Buffer.alloc(buckets.length * BUCKET_BYTES);
  buckets.forEach((x, i) => BUCKET_FIELDS.forEach((f, k) => b.writeDoubleBE(x[f], i * BUCKET_BYTES + k * 8)));
  return b;
}

describe('stats buckets rendering', () => {
  it('renders each bucket as JSON.stringify writes the StatsBucket, avg = sum / count', () => {
    const finite = fc.double({ noNaN: true, noDefaultInfinity: true });
    const bucket = fc.record({
      // whole minutes from 1970 to 2100
      epochSeconds: fc.integer({ min: 0, max: 4_102_444_800 / 60 }).map((m) => m * 60),
      count: fc.integer({ min: 1, max: 2 ** 40 }),
      sum: finite,
      min: finite,
      max: finite,
      first: finite,
      last: finite,
    });
    fc.assert(
      fc.property(fc.array(bucket, { maxLength: 20 }), (buckets) => {
        const expected = buckets.map((x) => ({
          ts: new Date(x.epochSeconds * 1000).toISOString(),
          count: x.count,
          min: x.min,
          max: x.max,
          avg: x.sum / x.count,
          sum: x.sum,
          first: x.first,
          last: x.last,
        }));
        // the same text (key order, number notation), except that JSON.stringify writes a non-finite avg as null too
        assert.equal(`[${renderBuckets(bytes(buckets))}]`, JSON.stringify(expected));
      }),
      { numRuns: 2_000 },
    );
  });

  it('renders a value that is not a number (a null sent as NaN) as null, and no buckets as nothing', () => {
    const b = bytes([{ epochSeconds: 3_600, count: 2, sum: NaN, min: 1.5, max: NaN, first: -0, last: 2 }]);
    assert.deepEqual(JSON.parse(`[${renderBuckets(b)}]`), [
      { ts: '1970-01-01T01:00:00.000Z', count: 2, min: 1.5, max: null, avg: null, sum: null, first: 0, last: 2 },
    ]);
    assert.equal(renderBuckets(null), '');
    assert.equal(renderBuckets(Buffer.alloc(0)), '');
  });

  it('refuses bytes that are not whole buckets', () => {
    assert.throws(() => renderBuckets(Buffer.alloc(BUCKET_BYTES + 8)), /not a whole number of buckets/);
  });
});
