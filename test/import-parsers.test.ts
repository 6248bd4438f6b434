/**
 * Bulk-import parsers (NDJSON, CSV) and the shared timestamp rule. Pure modules: no
 * database here; the COPY path that consumes them is tested with the ingest routes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { parseTimestamp } from '../src/modules/readings/timestamp.ts';
import type { ReadingInput } from '../src/modules/readings/types.ts';
import { ImportParseError } from '../src/modules/ingest/import-error.ts';
import { MAX_LINE_BYTES, type ParseOptions } from '../src/modules/ingest/import-input.ts';
import { parseNdjson } from '../src/modules/ingest/ndjson.ts';
import { parseCsv } from '../src/modules/ingest/csv.ts';

type Parser = typeof parseNdjson;
type Input = Buffer | string;

const NOW = 1_795_428_000_000_000; // 2026-11-23T10:00:00Z
const OPTS: ParseOptions = { batchSize: 3, nowUs: NOW };
const MAX_TS = Number.MAX_SAFE_INTEGER;
const T0 = Date.UTC(2026, 10, 23, 10) * 1000;

// ---------------------------------------------------------------------------------------
// helpers

async function* chunked(data: Input, cuts: readonly number[] = []): AsyncGenerator<Input> {
  let previous = 0;
  for (const cut of cuts) {
    yield typeof data === 'string' ? data.slice(previous, cut) : data.subarray(previous, cut);
    previous = cut;
  }
  yield typeof data === 'string' ? data.slice(previous) : data.subarray(previous);
}

interface Outcome {
  readings: ReadingInput[];
  error?: { line: number; detail: string };
}

/** Parses everything, checking batch sizes; rethrows anything but ImportParseError. */
async function run(parse: Parser, data: Input, cuts: readonly number[] = [], opts = OPTS): Promise<Outcome> {
  const readings: ReadingInput[] = [];
  let short = false;
  try {
    for await (const batch of parse(chunked(data, cuts), opts)) {
      assert.ok(!short, 'only the last batch may be short');
      assert.ok(batch.length >= 1 && batch.length <= opts.batchSize, `batch of ${batch.length}`);
      short = batch.length < opts.batchSize;
      readings.push(...batch);
    }
  } catch (error) {
    if (!(error instanceof ImportParseError)) throw error;
    return { readings, error: { line: error.line, detail: error.detail } };
  }
  return { readings };
}

async function parsed(parse: Parser, data: Input, opts = OPTS): Promise<ReadingInput[]> {
  const outcome = await run(parse, data, [], opts);
  assert.equal(outcome.error, undefined, `unexpected error ${JSON.stringify(outcome.error)}`);
  return outcome.readings;
}

async function failsAt(parse: Parser, data: Input, line: number, detail: RegExp): Promise<void> {
  const { error } = await run(parse, data);
  assert.ok(error, 'expected an ImportParseError');
  assert.equal(error.line, line, `line of "${error.detail}"`);
  assert.match(error.detail, detail);
}

/** A source that yields `head`, then `body` forever, counting the chunks taken. */
function endless(head: string, body: string): AsyncIterable<string> & { pulled: number } {
  const source = {
    pulled: 0,
    async *[Symbol.asyncIterator](): AsyncGenerator<string> {
      yield head;
      for (;;) {
        source.pulled++;
        yield body;
      }
    },
  };
  return source;
}

async function drain(readings: AsyncGenerator<ReadingInput[]>): Promise<void> {
  for await (const _ of readings);
}

const reading = (device: string, ts: number, metrics: Record<string, number>): ReadingInput => ({ device, ts, metrics });
const json = (value: unknown): string => `${JSON.stringify(value)}\n`;

/** Every way to cut `data` once and twice (or every 7th pair when that gets large). */
function cutsOf(length: number): number[][] {
  const all: number[][] = [[]];
  for (let i = 0; i <= length; i++) all.push([i]);
  const step = length > 120 ? 7 : 1;
  for (let i = 1; i < length; i += step) for (let j = i + 1; j < length; j++) all.push([i, j]);
  all.push(Array.from({ length: Math.max(0, length - 1) }, (_, k) => k + 1)); // one unit per chunk
  return all;
}

/** blockSize 1 hands every chunk to the parser as it comes, instead of joining small ones. */
const UNBLOCKED: ParseOptions = { ...OPTS, blockSize: 1 };

async function assertChunkingInvariant(parse: Parser, data: Input): Promise<Outcome> {
  const whole = await run(parse, data);
  for (const cuts of cutsOf(data.length)) {
    assert.deepStrictEqual(await run(parse, data, cuts, UNBLOCKED), whole, `cut at ${cuts.join(',')}`);
  }
  return whole;
}

// ---------------------------------------------------------------------------------------
// parseTimestamp

describe('parseTimestamp', () => {
  it('reads RFC 3339 in UTC, with offsets, separators and fractions truncated to µs', () => {
    const cases: Array<[string, number]> = [
      ['2026-11-23T10:00:00Z', T0],
      ['2026-11-23T12:00:00+02:00', T0],
      ['2026-11-23T05:30:00-04:30', T0],
      ['2026-11-23T10:00:00-00:00', T0],
      ['2026-11-23t10:00:00z', T0],
      ['2026-11-23 10:00:00Z', T0],
      ['2026-11-23T10:00:00.1Z', T0 + 100_000],
      ['2026-11-23T10:00:00.123456Z', T0 + 123_456],
      ['2026-11-23T10:00:00.123456789Z', T0 + 123_456],
      ['2026-11-23T10:00:00.9999999Z', T0 + 999_999],
      ['2024-02-29T00:00:00Z', Date.UTC(2024, 1, 29) * 1000],
      ['2000-02-29T00:00:00Z', Date.UTC(2000, 1, 29) * 1000],
      ['2016-12-31T23:59:60Z', Date.UTC(2017, 0, 1) * 1000], // leap second → next second
      ['1970-01-01T00:00:00Z', 0],
      ['1970-01-01T01:00:00+01:00', 0],
      ['2255-06-05T23:47:34.740991Z', MAX_TS],
    ];
    for (const [text, us] of cases) assert.equal(parseTimestamp(text), us, text);
  });

  it('rejects what is not RFC 3339, not a real date, or out of range', () => {
    const rejected = [
      '2026-13-45', '2026-13-01T00:00:00Z', '2026-00-10T00:00:00Z', '2026-11-31T00:00:00Z',
      '2026-11-00T00:00:00Z', '2023-02-29T00:00:00Z', '2100-02-29T00:00:00Z', '2026-11-23T24:00:00Z',
      '2026-11-23T10:60:00Z', '2026-11-23T10:00:61Z', '2026-11-23T10:00:00+24:00', '2026-11-23T10:00:00+02:60',
      '2026-11-23T10:00:00', '2026-11-23T10:00Z', '2026-11-23', '2026-11-23T10:00:00+0200',
      '2026-11-23T10:00:00.Z', '2026-11-23T10:00:00.1234567890Z', ' 2026-11-23T10:00:00Z',
      '2026-11-23T10:00:00Z ', '2026-11-23_10:00:00Z', '+002026-11-23T10:00:00Z', '2026/11/23 10:00:00Z',
      '２０２６-11-23T10:00:00Z', 'Mon, 23 Nov 2026 10:00:00 GMT', '1969-12-31T23:59:59.999999Z',
      '1970-01-01T00:59:59+01:00', '2255-06-05T23:47:34.740992Z', '9999-12-31T23:59:59Z',
      'yesterday', 'now', '', ' ', 'null',
    ];
    for (const text of rejected) assert.equal(parseTimestamp(text), null, text);
  });

  it('reads epoch milliseconds as numbers and digit strings, µs in up to 3 fractional digits', () => {
    const cases: Array<[string | number, number]> = [
      [1_700_000_000_000, 1_700_000_000_000_000],
      [1_700_000_000_000.5, 1_700_000_000_000_500],
      [1_700_000_000_000.123, 1_700_000_000_000_123],
      [0, 0],
      [1e12, 1e15],
      ['1700000000000', 1_700_000_000_000_000],
      ['1700000000000.5', 1_700_000_000_000_500],
      ['1700000000000.123', 1_700_000_000_000_123],
      ['0001700000000000', 1_700_000_000_000_000],
      ['9007199254740.991', MAX_TS],
    ];
    for (const [value, us] of cases) assert.equal(parseTimestamp(value), us, String(value));
    const rejected: Array<string | number> = [
      1_700_000_000_000.1234, -1, Number.NaN, Number.POSITIVE_INFINITY, 1e-7, 9_007_199_254_741,
      '1700000000000.1234', '1700000000000.', '.5', '-1', '+1', '1e12', ' 1', '1 ', '0x10',
      '17000000000000000', '9007199254740.992', '1,5',
    ];
    for (const value of rejected) assert.equal(parseTimestamp(value), null, String(value));
  });

  it('round-trips every µs in range through RFC 3339 with any offset, and agrees with Date.parse', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX_TS }),
        fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 }),
        fc.constantFrom('T', 't', ' '),
        fc.string({ unit: fc.constantFrom('0', '5', '9'), maxLength: 3 }),
        (us, offset, separator, extraDigits) => {
          const text = formatRfc3339(us, offset, separator, extraDigits);
          assert.equal(parseTimestamp(text), us, text);
          if (separator === 'T') assert.equal(Date.parse(text), Math.floor(us / 1000), text);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('reads a fractional number as its shortest decimal: more than 3 fractional digits is refused', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 2 ** 44, noNaN: true }), (ms) => {
        const m = /^(\d+)(?:\.(\d+))?$/.exec(String(ms));
        const expected = m && (m[2] ?? '').length <= 3 && Number.isSafeInteger(Number(m[1]) * 1000) ? Number(m[1]) * 1000 + Number((m[2] ?? '').padEnd(3, '0')) : null;
        assert.equal(parseTimestamp(ms), expected, String(ms));
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips epoch milliseconds as text, and as numbers while doubles resolve a µs', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_TS }), (us) => {
        const text = formatEpochMs(us);
        assert.equal(parseTimestamp(text), us, text);
        if (us < 2 ** 43 * 1000) assert.equal(parseTimestamp(Number(text)), us, text);
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws, and returns null or an in-range integer', () => {
    const check = (result: number | null): void => {
      assert.ok(result === null || (Number.isSafeInteger(result) && result >= 0));
    };
    fc.assert(fc.property(fc.string(), (text) => check(parseTimestamp(text))), { numRuns: 300 });
    fc.assert(fc.property(fc.double(), (value) => check(parseTimestamp(value))), { numRuns: 300 });
  });
});

function formatRfc3339(us: number, offsetMinutes: number, separator: string, extraDigits: string): string {
  const local = new Date(Math.floor(us / 1000) + offsetMinutes * 60_000).toISOString(); // …sss Z
  const fraction = String(us % 1_000_000).padStart(6, '0') + extraDigits;
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  const zone =
    offsetMinutes === 0
      ? 'Z'
      : `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  return `${local.slice(0, 10)}${separator}${local.slice(11, 19)}.${fraction}${zone}`;
}

function formatEpochMs(us: number): string {
  const ms = Math.floor(us / 1000);
  const rest = us % 1000;
  return rest === 0 ? String(ms) : `${ms}.${String(rest).padStart(3, '0').replace(/0+$/, '')}`;
}

// ---------------------------------------------------------------------------------------
// NDJSON

describe('parseNdjson', () => {
  it('reads objects line by line, skipping blank lines, with LF or CRLF', async () => {
    const input =
      '{"device":"a","ts":"2026-11-23T10:00:00Z","metrics":{"temp":21.5}}\r\n' +
      '\n   \r\n\t\n' +
      '{"device":"b","ts":1700000000000.5,"metrics":{"temp":-1,"hum":40}}\n' +
      '{"device":"c","metrics":{"x":0}}'; // no final line break, no ts
    assert.deepStrictEqual(await parsed(parseNdjson, input), [
      reading('a', T0, { temp: 21.5 }),
      reading('b', 1_700_000_000_000_500, { temp: -1, hum: 40 }),
      reading('c', NOW, { x: 0 }),
    ]);
  });

  it('accepts any metric name, "__proto__" included, and digit strings as epoch ms', async () => {
    const [r] = await parsed(parseNdjson, '{"device":"","ts":"1700000000000","metrics":{"__proto__":1,"":2}}');
    assert.ok(r);
    assert.deepStrictEqual(Object.entries(r.metrics), [['__proto__', 1], ['', 2]]);
    assert.equal(r.ts, 1_700_000_000_000_000);
    assert.equal(r.device, ''); // lengths and charsets are the caller's to check
  });

  it('yields batches of batchSize, the last one shorter', async () => {
    const input = Array.from({ length: 7 }, (_, i) => json({ device: `d${i}`, metrics: { m: i } })).join('');
    const sizes: number[] = [];
    for await (const batch of parseNdjson(chunked(input), OPTS)) sizes.push(batch.length);
    assert.deepStrictEqual(sizes, [3, 3, 1]);
    assert.deepStrictEqual(await parsed(parseNdjson, ''), []);
    assert.deepStrictEqual(await parsed(parseNdjson, '\n\r\n'), []);
  });

  it('names the line of each kind of bad record', async () => {
    const good = json({ device: 'ok', metrics: { m: 1 } });
    const cases: Array<[string, RegExp]> = [
      ['{"device":"a","metrics":{"m":1}', /invalid JSON/],
      ['{"device":"a",,}', /invalid JSON/],
      ['[1,2]', /expected a JSON object, got an array/],
      ['42', /expected a JSON object, got 42/],
      ['null', /expected a JSON object, got null/],
      ['"text"', /expected a JSON object/],
      ['{"metrics":{"m":1}}', /missing "device"/],
      ['{"device":7,"metrics":{"m":1}}', /"device" must be a string, got 7/],
      ['{"device":null,"metrics":{"m":1}}', /"device" must be a string, got null/],
      ['{"device":"a"}', /missing "metrics"/],
      ['{"device":"a","metrics":[1]}', /"metrics" must be an object of numbers, got an array/],
      ['{"device":"a","metrics":5}', /"metrics" must be an object/],
      ['{"device":"a","metrics":{}}', /"metrics" is empty/],
      ['{"device":"a","metrics":{"m":"1"}}', /metric "m" must be a finite number, got "1"/],
      ['{"device":"a","metrics":{"m":null}}', /metric "m" must be a finite number, got null/],
      ['{"device":"a","metrics":{"m":true}}', /metric "m" must be a finite number/],
      ['{"device":"a","metrics":{"m":{"n":1}}}', /metric "m" must be a finite number, got an object/],
      ['{"device":"a","metrics":{"m":1e999}}', /metric "m" must be a finite number, got Infinity/],
      ['{"device":"a","ts":"2026-13-45","metrics":{"m":1}}', /"ts" must be .*got "2026-13-45"/],
      ['{"device":"a","ts":"yesterday","metrics":{"m":1}}', /"ts" must be/],
      ['{"device":"a","ts":"","metrics":{"m":1}}', /"ts" must be/],
      ['{"device":"a","ts":null,"metrics":{"m":1}}', /"ts" must be .*got null/],
      ['{"device":"a","ts":-5,"metrics":{"m":1}}', /"ts" must be/],
      ['{"device":"a","ts":{},"metrics":{"m":1}}', /"ts" must be/],
      ['{"device":"a","time":"2026-11-23T10:00:00Z","metrics":{"m":1}}', /unexpected key "time"/],
    ];
    for (const [line, detail] of cases) await failsAt(parseNdjson, `${good}\n${good}${line}\n${good}`, 4, detail);
  });

  it('rejects a line over 1 MiB, whether it arrives whole or in pieces, and takes one of exactly 1 MiB', async () => {
    const frame = json({ device: '', metrics: { m: 1 } }).length - 1;
    const exact = json({ device: 'x'.repeat(MAX_LINE_BYTES - frame), metrics: { m: 1 } });
    const over = json({ device: 'x'.repeat(MAX_LINE_BYTES - frame + 1), metrics: { m: 1 } });
    const wide = json({ device: 'é'.repeat(MAX_LINE_BYTES / 2), metrics: { m: 1 } }); // fewer units than bytes
    assert.equal((await parsed(parseNdjson, `\n${exact}`)).length, 1);
    await failsAt(parseNdjson, `\n${over}`, 2, /line longer than 1048576 bytes/);
    await failsAt(parseNdjson, `\n${wide}`, 2, /line longer than/);
    const pieces = Array.from({ length: 40 }, (_, k) => (k + 1) * 30_000);
    for (const opts of [OPTS, UNBLOCKED]) {
      const { error } = await run(parseNdjson, `\n${'x'.repeat(2 * MAX_LINE_BYTES)}`, pieces, opts);
      assert.deepStrictEqual(error, { line: 2, detail: 'line longer than 1048576 bytes' });
    }
  });

  it('gives up on an endless line after about 1 MiB instead of buffering it', async () => {
    const source = endless('{"device":"', 'x'.repeat(100_000));
    await assert.rejects(drain(parseNdjson(source, OPTS)), { name: 'ImportParseError', line: 1 });
    assert.ok(source.pulled <= 13, `pulled ${source.pulled} chunks`);
  });

  it('reports invalid or truncated UTF-8 on the line where it occurs, and drops a leading BOM', async () => {
    const line = json({ device: 'a', metrics: { m: 1 } });
    const bad = Buffer.concat([Buffer.from(line + line), Buffer.from('{"device":"\xff"}', 'latin1')]);
    await failsAt(parseNdjson, bad, 3, /^invalid UTF-8$/);
    const surrogate = Buffer.concat([Buffer.from(line), Buffer.from([0xed, 0xa0, 0x80, 0x0a])]);
    await failsAt(parseNdjson, surrogate, 2, /invalid UTF-8/);
    const truncated = Buffer.concat([Buffer.from(`${line}${line}{"device":"`), Buffer.from('€').subarray(0, 2)]);
    await failsAt(parseNdjson, truncated, 3, /input ends inside a UTF-8 sequence/);
    assert.equal((await parsed(parseNdjson, Buffer.from(`\uFEFF${line}`))).length, 1);
    assert.equal((await parsed(parseNdjson, `\uFEFF${line}`)).length, 1);
  });

  it('gives the same result wherever the input is cut, even inside a UTF-8 character', async () => {
    const input =
      '{"device":"dév-€","ts":"2026-11-23T12:00:00.5+02:00","metrics":{"t😀":1.5}}\r\n\n' +
      '{"device":"b","metrics":{"x":-2e-3}}\n{"device":"c","ts":1700000000000.25,"metrics":{"y":0}}';
    const bytes = Buffer.from(input);
    const whole = await assertChunkingInvariant(parseNdjson, bytes);
    assert.deepStrictEqual(whole.readings, [
      reading('dév-€', T0 + 500_000, { 't😀': 1.5 }),
      reading('b', NOW, { x: -2e-3 }),
      reading('c', 1_700_000_000_000_250, { y: 0 }),
    ]);
    await assertChunkingInvariant(parseNdjson, input); // string chunks, surrogate pairs split
    const failing = Buffer.concat([Buffer.from('{"device":"é","metrics":{"m":1}}\n\n{"device":"😀",'), Buffer.from([0xf0, 0x28])]);
    assert.equal((await assertChunkingInvariant(parseNdjson, failing)).error?.line, 3);
    const badTs = Buffer.from('{"device":"é","metrics":{"m":1}}\n{"device":"€","ts":"2026-02-30T00:00:00Z","metrics":{"m":1}}\n');
    assert.equal((await assertChunkingInvariant(parseNdjson, badTs)).error?.line, 2);
  });

  it('stops pulling from the source when the consumer stops', async () => {
    let pulled = 0;
    let closed = false;
    async function* endless(): AsyncGenerator<string> {
      try {
        for (;;) {
          pulled++;
          yield json({ device: 'd', metrics: { m: pulled } }).repeat(1000);
        }
      } finally {
        closed = true;
      }
    }
    for await (const batch of parseNdjson(endless(), { batchSize: 10, nowUs: NOW })) {
      assert.equal(batch.length, 10);
      break;
    }
    assert.ok(closed);
    assert.ok(pulled <= 3, `pulled ${pulled} chunks`);
  });
});

// ---------------------------------------------------------------------------------------
// CSV

describe('parseCsv', () => {
  it('reads the long form, merging consecutive rows of one device and timestamp', async () => {
    const input = [
      'device,ts,metric,value',
      'a,2026-11-23T10:00:00Z,temp,21.5',
      'a,2026-11-23T12:00:00+02:00,hum,40', // same instant, other spelling
      'a,2026-11-23T10:00:00Z,temp,22', // temp already there: a new reading
      'b,2026-11-23T10:00:00Z,temp,1e3',
      'a,1700000000000.5,temp,-.5',
      'a,,temp,0',
      'a,,hum,7',
      '',
    ].join('\n');
    assert.deepStrictEqual(await parsed(parseCsv, input), [
      reading('a', T0, { temp: 21.5, hum: 40 }),
      reading('a', T0, { temp: 22 }),
      reading('b', T0, { temp: 1000 }),
      reading('a', 1_700_000_000_000_500, { temp: -0.5 }),
      reading('a', NOW, { temp: 0, hum: 7 }),
    ]);
  });

  it('reads the wide form, an empty cell meaning no value', async () => {
    const input = 'device,ts,temp,hum,__proto__\r\nd1,1700000000000,21.5,,1\r\nd2,,,40,\r\n';
    const readings = await parsed(parseCsv, input);
    assert.deepStrictEqual(readings, [
      reading('d1', 1_700_000_000_000_000, Object.fromEntries([['temp', 21.5], ['__proto__', 1]])),
      reading('d2', NOW, { hum: 40 }),
    ]);
    assert.equal(Object.getPrototypeOf(readings[0]!.metrics), Object.prototype);
  });

  it('handles RFC 4180 quoting: escapes, separators and line breaks inside quotes', async () => {
    const input =
      'device,"ts",metric,value\n' +
      '"a ""quoted"", device",2026-11-23T10:00:00Z,"temp, inside",1\n' +
      '"multi\r\nline\ndevice",,"",2\n';
    assert.deepStrictEqual(await parsed(parseCsv, input), [
      reading('a "quoted", device', T0, { 'temp, inside': 1 }),
      reading('multi\r\nline\ndevice', NOW, { '': 2 }),
    ]);
    await failsAt(parseCsv, `${input}"",,m,3\n`, 6, /^empty device$/); // physical lines counted
  });

  it('skips empty lines, and a header-only file yields nothing', async () => {
    assert.deepStrictEqual(await parsed(parseCsv, 'device,ts,m\n\n\r\nd,,1\n\n'), [reading('d', NOW, { m: 1 })]);
    assert.deepStrictEqual(await parsed(parseCsv, 'device,ts,metric,value'), []);
    assert.deepStrictEqual(await parsed(parseCsv, '\uFEFFdevice,ts,metric,value\r\nd,,m,1'), [reading('d', NOW, { m: 1 })]);
  });

  it('rejects bad headers on line 1', async () => {
    await failsAt(parseCsv, '', 1, /empty input: expected a header line/);
    await failsAt(parseCsv, '\n\r\n', 1, /empty input/);
    const headers: Array<[string, RegExp]> = [
      ['device,ts', /header must be/],
      ['ts,device,temp', /header must be/],
      ['Device,ts,temp', /header must be/],
      ['device, ts,temp', /header must be/],
      ['device,ts,temp,temp', /duplicate metric "temp" in header/],
      ['device,ts,temp,', /empty metric name in header/],
    ];
    for (const [header, detail] of headers) await failsAt(parseCsv, `${header}\nd,,1\n`, 1, detail);
  });

  it('names the line of each kind of bad row, counting lines inside quoted fields', async () => {
    const wide = 'device,ts,temp,hum\n"multi\nline",,1,2\n';
    const wideCases: Array<[string, RegExp]> = [
      ['d,,1', /expected 4 fields, got 3/],
      ['d,,1,2,3', /expected 4 fields, got 5/],
      [',,1,2', /empty device/],
      ['d,2026-13-45,1,', /ts "2026-13-45" is not an RFC 3339 timestamp or epoch milliseconds/],
      ['d,yesterday,1,', /ts "yesterday"/],
      ['d,-1700000000000,1,', /ts "-1700000000000"/],
      ['d,,,', /row has no metric values/],
      ['d,,NaN,', /metric "temp": "NaN" is not a finite number/],
      ['d,,Infinity,', /"Infinity" is not a finite number/],
      ['d,,-Infinity,', /not a finite number/],
      ['d,,abc,', /"abc" is not a finite number/],
      ['d,,1,0x10', /metric "hum": "0x10" is not a finite number/],
      ['d,, 1,', /" 1" is not a finite number/],
      ['d,,1e999,', /"1e999" is not a finite number/],
      ['d,,1.2.3,', /not a finite number/],
      ['d,,1,"2"x', /unexpected text after a closing quote/],
      ['d,,1,2"', /quote inside an unquoted field/],
    ];
    for (const [row, detail] of wideCases) await failsAt(parseCsv, `${wide}${row}\nd,,1,2\n`, 4, detail);

    const long = 'device,ts,metric,value\nd,,m,1\n';
    const longCases: Array<[string, RegExp]> = [
      ['d,,m', /expected 4 fields, got 3/],
      ['d,,m,', /metric "m": empty value/],
      ['d,,m,x', /metric "m": "x" is not a finite number/],
      ['d,,m,1,', /expected 4 fields, got 5/],
    ];
    for (const [row, detail] of longCases) await failsAt(parseCsv, `${long}${row}\n`, 3, detail);
  });

  it('takes exactly the finite decimal numbers as values', async () => {
    const reference = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
    const unit = fc.constantFrom(...'0123456789.eE+-xXobB _\tInfinityNa\u00a0\u0663'.split(''));
    await fc.assert(
      fc.asyncProperty(fc.string({ unit, minLength: 1, maxLength: 8 }), async (cell) => {
        const { readings, error } = await run(parseCsv, `device,ts,m\nd,,${cell}\n`);
        const expected = reference.test(cell) && Number.isFinite(Number(cell));
        assert.equal(error === undefined, expected, cell);
        if (expected) assert.equal(readings[0]?.metrics.m, Number(cell));
      }),
      { numRuns: 1000 },
    );
  });

  it('reports an unterminated quote on the line where it opens', async () => {
    await failsAt(parseCsv, 'device,ts,m\nd,,1\n"never\nclosed,,1\n', 3, /unterminated quoted field/);
    await failsAt(parseCsv, 'device,ts,m\n"a\nb",,1\nd,"\n', 4, /unterminated quoted field/);
  });

  it('rejects a record over 1 MiB, whole or in pieces', async () => {
    const big = `device,ts,m\nd,,1\n"${'x\n'.repeat(MAX_LINE_BYTES / 2 + 1)}",,1\nd,,2\n`;
    await failsAt(parseCsv, big, 3, /record longer than 1048576 bytes/);
    const pieces = Array.from({ length: 40 }, (_, k) => (k + 1) * 30_000);
    for (const opts of [OPTS, UNBLOCKED]) {
      assert.deepStrictEqual((await run(parseCsv, big, pieces, opts)).error, {
        line: 3,
        detail: 'record longer than 1048576 bytes',
      });
    }
    const source = endless('device,ts,m\nd,,1\n"', 'x\n'.repeat(50_000));
    await assert.rejects(drain(parseCsv(source, OPTS)), { name: 'ImportParseError', line: 3 });
    assert.ok(source.pulled <= 13, `pulled ${source.pulled} chunks`);
    const fits = `device,ts,m\n${'x'.repeat(MAX_LINE_BYTES - 3)},,1\n`;
    assert.equal((await parsed(parseCsv, fits)).length, 1);
  });

  it('reports invalid UTF-8 on its physical line', async () => {
    const input = Buffer.concat([Buffer.from('device,ts,m\n"a\nb",,1\n"c\n'), Buffer.from([0xc3, 0x28])]);
    await failsAt(parseCsv, input, 5, /invalid UTF-8/);
  });

  it('gives the same result wherever the input is cut, even inside a UTF-8 character', async () => {
    const wide = Buffer.from('device,ts,t°,"h,""%"""\r\n"dé\nv",2026-11-23T10:00:00.5Z,1,\r\n€,,,-2\r\n"😀",1700000000000,3,4');
    const { readings } = await assertChunkingInvariant(parseCsv, wide);
    assert.deepStrictEqual(readings, [
      reading('dé\nv', T0 + 500_000, { 't°': 1 }),
      reading('€', NOW, { 'h,"%"': -2 }),
      reading('😀', 1_700_000_000_000_000, { 't°': 3, 'h,"%"': 4 }),
    ]);
    await assertChunkingInvariant(parseCsv, wide.toString()); // string chunks
    const long = Buffer.from('device,ts,metric,value\n\n"é",,a,1\r\n"é",,b,2\n😀,,"c\r\n",3\n');
    assert.equal((await assertChunkingInvariant(parseCsv, long)).readings.length, 2);
    const failing = Buffer.from('device,ts,metric,value\n"é\n",,a,1\n😀,,"b"€,2\n');
    assert.equal((await assertChunkingInvariant(parseCsv, failing)).error?.line, 4);
    const unterminated = Buffer.from('device,ts,metric,value\n"é\n",,a,1\n😀,,"b\n');
    assert.equal((await assertChunkingInvariant(parseCsv, unterminated)).error?.line, 4);
    const crlf = 'device,ts,"m"\r\n"a",,"1"\r\n\r\n\rb,"","2"\r\n';
    assert.deepStrictEqual(await assertChunkingInvariant(parseCsv, Buffer.from(crlf)), {
      readings: [reading('a', NOW, { m: 1 }), reading('\rb', NOW, { m: 2 })], // a lone CR is data
    });
    const crlfFailing = Buffer.from(`${crlf}c,"",""""\r\n`);
    assert.equal((await assertChunkingInvariant(parseCsv, crlfFailing)).error?.line, 5);
  });
});

// ---------------------------------------------------------------------------------------
// properties shared by both parsers

type TsStyle = 'omit' | 'rfc' | 'ms-text' | 'ms-number';

interface Sample {
  reading: ReadingInput;
  style: TsStyle;
  offset: number;
  /** Metric names and values in the order they are written. */
  entries: Array<[string, number]>;
}

const awkward = fc.constantFrom(',', '"', '\n', '\r', '\r\n', ' ', 'é', '😀', '\uFEFF', 'a', 'b');
const deviceArb = fc.oneof(
  fc.constantFrom('a', 'b'), // repeats, so that long-form rows merge
  fc.string({ unit: 'binary', minLength: 1, maxLength: 10 }),
  fc.string({ unit: awkward, minLength: 1, maxLength: 6 }),
);
const metricNameArb = fc.oneof(
  fc.constantFrom('temp', 'hum', '__proto__', 'constructor', 'metric', 'value', 'device', 'ts'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 8 }),
  fc.string({ unit: awkward, minLength: 1, maxLength: 5 }),
);
const valueArb = fc
  .oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer({ min: -1000, max: 1000 }))
  .map((v) => (v === 0 ? 0 : v)); // -0 prints as "0"
const sampleArb: fc.Arbitrary<Sample> = fc
  .record({
    device: deviceArb,
    style: fc.constantFrom<TsStyle>('omit', 'rfc', 'ms-text', 'ms-number'),
    us: fc.oneof(fc.integer({ min: 0, max: MAX_TS }), fc.constantFrom(T0, 0, MAX_TS)),
    offset: fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 }),
    entries: fc.uniqueArray(fc.tuple(metricNameArb, valueArb), { minLength: 1, maxLength: 4, selector: ([name]) => name }),
  })
  .map(({ device, style, us, offset, entries }) => {
    // Doubles stop resolving single µs at 2^43 ms; the text forms are exact everywhere.
    const ts = style === 'omit' ? NOW : style === 'ms-number' && us >= 2 ** 43 * 1000 ? us - (us % 1000) : us;
    return { reading: { device, ts, metrics: Object.fromEntries(entries) }, style, offset, entries };
  });

const chunkingArb = fc.record({
  cuts: fc.array(fc.nat(), { maxLength: 8 }),
  asText: fc.boolean(),
  batchSize: fc.integer({ min: 1, max: 5 }),
  blockSize: fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }),
});
type Chunking = typeof chunkingArb extends fc.Arbitrary<infer T> ? T : never;

function cutsFor(data: Input, chunking: Chunking): number[] {
  return [...new Set(chunking.cuts.map((cut) => cut % (data.length + 1)))].sort((a, b) => a - b);
}

function optsFor({ batchSize, blockSize }: Chunking): ParseOptions {
  return { batchSize, nowUs: NOW, blockSize };
}

async function runChunked(parse: Parser, text: string, chunking: Chunking): Promise<Outcome> {
  const data: Input = chunking.asText ? text : Buffer.from(text);
  return run(parse, data, cutsFor(data, chunking), optsFor(chunking));
}

function tsText(sample: Sample): string {
  const { ts } = sample.reading;
  if (sample.style === 'rfc') return formatRfc3339(ts, sample.offset, 'T', '');
  return sample.style === 'omit' ? '' : formatEpochMs(ts);
}

function toNdjson(samples: readonly Sample[]): string {
  return samples
    .map((s) => {
      const metrics = `{${s.entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
      const ts = s.style === 'omit' ? '' : s.style === 'ms-number' ? `,"ts":${tsText(s)}` : `,"ts":"${tsText(s)}"`;
      return `{"device":${JSON.stringify(s.reading.device)}${ts},"metrics":${metrics}}\n`;
    })
    .join('');
}

const csvField = (text: string): string => (/[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);

function toLongCsv(samples: readonly Sample[]): string {
  const rows = ['device,ts,metric,value\r\n'];
  for (const s of samples) {
    for (const [name, value] of s.entries) {
      rows.push(`${csvField(s.reading.device)},${tsText(s)},${csvField(name)},${value}\n`);
    }
  }
  return rows.join('');
}

/** The documented merge rule, as a model. */
function mergeLong(samples: readonly Sample[]): ReadingInput[] {
  const out: ReadingInput[] = [];
  let open: ReadingInput | undefined;
  for (const { reading: r, entries } of samples) {
    for (const [name, value] of entries) {
      if (open && open.device === r.device && open.ts === r.ts && !Object.hasOwn(open.metrics, name)) {
        Object.defineProperty(open.metrics, name, { value, enumerable: true, writable: true, configurable: true });
      } else {
        open = { device: r.device, ts: r.ts, metrics: Object.fromEntries([[name, value]]) };
        out.push(open);
      }
    }
  }
  return out;
}

function toWideCsv(samples: readonly Sample[], names: readonly string[]): string {
  const lines = [['device', 'ts', ...names].map(csvField).join(',')];
  for (const s of samples) {
    const cells = names.map((name) => (Object.hasOwn(s.reading.metrics, name) ? String(s.reading.metrics[name]) : ''));
    lines.push([csvField(s.reading.device), tsText(s), ...cells].join(','));
  }
  return `${lines.join('\r\n')}${samples.length % 2 === 0 ? '\r\n' : ''}`;
}

describe('round trips (fast-check)', () => {
  const samplesArb = fc.array(sampleArb, { maxLength: 12 });

  it('NDJSON: serialised readings come back unchanged, however the bytes are chunked', async () => {
    await fc.assert(
      fc.asyncProperty(samplesArb, chunkingArb, async (samples, chunking) => {
        const outcome = await runChunked(parseNdjson, toNdjson(samples), chunking);
        assert.deepStrictEqual(outcome, { readings: samples.map((s) => s.reading) });
      }),
      { numRuns: 300 },
    );
  });

  it('long CSV: rows come back merged by the documented rule', async () => {
    await fc.assert(
      fc.asyncProperty(samplesArb, chunkingArb, async (samples, chunking) => {
        const outcome = await runChunked(parseCsv, toLongCsv(samples), chunking);
        assert.deepStrictEqual(outcome, { readings: mergeLong(samples) });
      }),
      { numRuns: 300 },
    );
  });

  it('wide CSV: one reading per row, absent metrics as empty cells', async () => {
    await fc.assert(
      fc.asyncProperty(samplesArb, chunkingArb, async (samples, chunking) => {
        const names = [...new Set(samples.flatMap((s) => s.entries.map(([name]) => name)))];
        if (names.length === 0) names.push('m');
        fc.pre(!(names.length === 2 && names[0] === 'metric' && names[1] === 'value')); // that header is long form
        const outcome = await runChunked(parseCsv, toWideCsv(samples, names), chunking);
        assert.deepStrictEqual(outcome, { readings: samples.map((s) => s.reading) });
      }),
      { numRuns: 300 },
    );
  });
});

describe('arbitrary input (fast-check)', () => {
  const token = fc.constantFrom(
    '{', '}', '[', ']', ':', ',', '"', '""', '\\', '\n', '\r\n', '\r', ' ', '{"device":"d","metrics":{"m":1}}',
    '"device"', '"ts"', '"metrics"', 'device,ts,metric,value\n', 'device,ts,a,b\n', 'd,,m,1\n', 'd,,1,\n',
    '1', '-2.5e3', '1e999', 'NaN', '2026-11-23T10:00:00Z', '1700000000000', 'é', '😀', 'null', '\uFEFF',
  );
  const inputArb = fc.oneof(
    fc.array(token, { maxLength: 40 }).map((tokens) => tokens.join('')),
    fc.string({ unit: 'binary', maxLength: 80 }),
    fc.uint8Array({ maxLength: 120 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  );
  // Latin-1 text re-encoded as UTF-8 is valid; raw bytes test the decoder.
  const dataArb = fc.oneof(
    inputArb.map((text) => ({ bytes: Buffer.from(text) })),
    fc.uint8Array({ maxLength: 120 }).map((bytes) => ({ bytes: Buffer.from(bytes) })),
    fc.tuple(inputArb, fc.uint8Array({ minLength: 1, maxLength: 3 }), inputArb).map(([a, junk, b]) => ({
      bytes: Buffer.concat([Buffer.from(a), junk, Buffer.from(b)]),
    })),
  );

  for (const [name, parse] of [['NDJSON', parseNdjson], ['CSV', parseCsv]] as const) {
    it(`${name}: throws only ImportParseError, on a line that exists, the same however chunked`, async () => {
      await fc.assert(
        fc.asyncProperty(dataArb, chunkingArb, async ({ bytes }, chunking) => {
          const opts = optsFor(chunking);
          const whole = await run(parse, bytes, [], opts); // rethrows anything but ImportParseError
          assert.deepStrictEqual(await run(parse, bytes, cutsFor(bytes, chunking), opts), whole);
          if (whole.error) {
            const lines = bytes.toString('latin1').split('\n').length;
            assert.ok(whole.error.line >= 1 && whole.error.line <= lines, `line ${whole.error.line} of ${lines}`);
          }
          for (const r of whole.readings) {
            assert.equal(typeof r.device, 'string');
            assert.ok(Number.isSafeInteger(r.ts) && r.ts >= 0);
            const values = Object.values(r.metrics);
            assert.ok(values.length > 0 && values.every(Number.isFinite));
          }
        }),
        { numRuns: 500 },
      );
    });
  }
});

describe('bounded memory', () => {
  it('streams 1,000,000 NDJSON lines from a generator, holding about one batch at a time', async () => {
    const LINES = 1_000_000;
    const PER_CHUNK = 1000;
    const batchSize = 5000;
    let produced = 0;
    async function* source(): AsyncGenerator<Buffer> {
      for (let i = 0; i < LINES; i += PER_CHUNK) {
        const lines: string[] = [];
        for (let k = i; k < i + PER_CHUNK; k++) {
          lines.push(`{"device":"d${k % 100}","ts":${1_700_000_000_000 + k},"metrics":{"temp":${k % 50},"hum":0.5}}\n`);
        }
        produced += PER_CHUNK;
        yield Buffer.from(lines.join(''));
      }
    }
    let consumed = 0;
    let maxAhead = 0;
    for await (const batch of parseNdjson(source(), { batchSize, nowUs: NOW })) {
      consumed += batch.length;
      maxAhead = Math.max(maxAhead, produced - consumed);
    }
    assert.equal(consumed, LINES);
    // The parser never runs more than a batch and a couple of chunks ahead of its consumer.
    assert.ok(maxAhead <= batchSize + 2 * PER_CHUNK, `ran ${maxAhead} lines ahead`);
  });

  it('hands out CSV device ids that do not keep their 64 KiB text block alive', () => {
    // A caller caching ids (say, a device lookup) must not pin a block per id. Measured
    // after a forced GC, hence a child process with --expose-gc.
    const script = `
      import { parseCsv } from ${JSON.stringify(new URL('../src/modules/ingest/csv.ts', import.meta.url).href)};
      async function* source() {
        yield 'device,ts,m\\n';
        for (let b = 0; b < 1000; b++) yield 'device-' + String(b).padStart(12, '0') + ',,1\\n' + 'd,,1\\n'.repeat(15000);
      }
      const ids = new Set();
      for await (const batch of parseCsv(source(), { batchSize: 5000, nowUs: 0 })) for (const r of batch) ids.add(r.device);
      globalThis.gc();
      process.stdout.write(JSON.stringify({ ids: ids.size, heap: process.memoryUsage().heapUsed }));`;
    const output = execFileSync(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', '--input-type=module', '--eval', script],
      { encoding: 'utf8', cwd: new URL('..', import.meta.url) }, // where tsx resolves
    );
    const { ids, heap } = JSON.parse(output) as { ids: number; heap: number };
    assert.equal(ids, 1001);
    assert.ok(heap < 48 * 2 ** 20, `heap ${(heap / 2 ** 20).toFixed(0)} MiB after GC (pinned blocks: ~100 MiB)`);
  });
});

describe('regressions', () => {
  it('keeps a second BOM as text when the first one was a chunk of its own, before an invalid byte (fast-check counterexample)', async () => {
    const bytes = Buffer.from([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf, 0x0a, 0x7b, 0x80, 0x00, 0x7b]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const outcome = await run(parseCsv, bytes, [cut], { batchSize: 1, nowUs: 0 });
      assert.equal(outcome.error?.line, 1, `cut at ${cut}: ${JSON.stringify(outcome.error)}`);
      assert.match(outcome.error!.detail, /^header must be/);
    }
  });

  it('drops a BOM split over chunks, before an invalid byte in the same chunk (fast-check counterexample)', async () => {
    const bytes = Buffer.from([0xef, 0xbb, 0xbf, 0x22, 0x74, 0x73, 0x22, 0x80, 0x00]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      async function* source() {
        yield bytes.subarray(0, cut);
        yield bytes.subarray(cut);
      }
      await assert.rejects(
        (async () => {
          for await (const _ of parseCsv(source(), { batchSize: 1, nowUs: 0 })) void _;
        })(),
        (err: unknown) => err instanceof ImportParseError && err.line === 1 && err.detail === 'invalid UTF-8',
        `cut at ${cut}`,
      );
    }
  });
});
