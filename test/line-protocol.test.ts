import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  LineProtocolError,
  parseLineProtocol,
  type LineProtocolOptions,
  type Precision,
} from '../src/modules/ingest/line-protocol.ts';
import type { ReadingInput } from '../src/modules/readings/types.ts';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const NOW_US = 1_700_000_000_123_456;
const BASE: LineProtocolOptions = {
  precision: 'ns',
  deviceTag: 'device',
  metricNaming: 'measurement.field',
  stringFields: 'reject',
  nowUs: NOW_US,
};

function parse(body: string, opts: Partial<LineProtocolOptions> = {}): ReadingInput[] {
  return parseLineProtocol(body, { ...BASE, ...opts });
}

function one(body: string, opts: Partial<LineProtocolOptions> = {}): ReadingInput {
  const readings = parse(body, opts);
  assert.equal(readings.length, 1, `expected one reading from ${JSON.stringify(body)}`);
  return readings[0] as ReadingInput;
}

/** The value of the single field `f` of measurement `m`. */
function value(text: string): number {
  return one(`m,device=d f=${text}`).metrics['m.f'] as number;
}

function assertFails(body: string, line: number, detail: string | RegExp, opts: Partial<LineProtocolOptions> = {}): void {
  assert.throws(
    () => parse(body, opts),
    (err: unknown) => {
      assert.ok(err instanceof LineProtocolError, `not a LineProtocolError: ${String(err)}`);
      assert.equal(err.line, line, `wrong line in: ${err.message}`);
      if (typeof detail === 'string') assert.equal(err.detail, detail);
      else assert.match(err.detail, detail);
      assert.equal(err.message, `line ${line}: ${err.detail}`);
      return true;
    },
  );
}

describe('line protocol: field types', () => {
  it('parses floats in every form the reference allows', () => {
    const cases: [string, number][] = [
      ['1', 1], ['1.0', 1], ['1.5', 1.5], ['-1.5', -1.5], ['-1.5e3', -1500], ['-1.234456e+78', -1.234456e78],
      ['1.', 1], ['.5', 0.5], ['-.5', -0.5], ['1.e2', 100], ['1E3', 1000], ['1e-3', 0.001], ['2.5E+2', 250],
      ['0', 0], ['007.50', 7.5], ['0.1', 0.1], ['3.141592653589793238', Math.PI],
      ['123456789012345678901234567890', 1.2345678901234568e29], ['1.7976931348623157e308', Number.MAX_VALUE],
      ['5e-324', Number.MIN_VALUE], ['1e-400', 0],
    ];
    for (const [text, expected] of cases) assert.equal(value(text), expected, text);
    assert.ok(Object.is(value('-0.0'), -0), 'a float keeps its negative zero');
  });

  it('parses integers and unsigned integers within ±(2^53−1)', () => {
    const cases: [string, number][] = [
      ['12i', 12], ['-12i', -12], ['0i', 0], ['007i', 7], ['12485903i', 12485903],
      ['9007199254740991i', MAX_SAFE], ['-9007199254740991i', -MAX_SAFE],
      ['12u', 12], ['0u', 0], ['9007199254740991u', MAX_SAFE],
    ];
    for (const [text, expected] of cases) assert.equal(value(text), expected, text);
    assert.ok(Object.is(value('-0i'), 0), 'integer -0 is 0');
  });

  it('maps every boolean spelling to 1 or 0', () => {
    for (const t of ['t', 'T', 'true', 'True', 'TRUE']) assert.equal(value(t), 1, t);
    for (const f of ['f', 'F', 'false', 'False', 'FALSE']) assert.equal(value(f), 0, f);
  });

  it('keeps all fields of a line in one reading', () => {
    assert.deepEqual(one('cpu,device=d1 usage=0.5,procs=12i,up=t,ticks=7u 1556813561098000000'), {
      device: 'd1',
      ts: 1556813561098000,
      metrics: { 'cpu.usage': 0.5, 'cpu.procs': 12, 'cpu.up': 1, 'cpu.ticks': 7 },
    });
  });

  it('rejects a string field, naming the field and the line', () => {
    assertFails('m,device=d a=1\nm,device=d a=2,note="hi there"', 2, /field 'note' has a string value/);
  });

  it("drops only the string fields with stringFields: 'ignore'", () => {
    const ignore = { stringFields: 'ignore' } as const;
    assert.deepEqual(one('m,device=d s="a \\"quoted\\", b=c d",v=1', ignore).metrics, { 'm.v': 1 });
    assert.deepEqual(one(String.raw`m,device=d s="C:\\",v=2 5000`, ignore), { device: 'd', ts: 5, metrics: { 'm.v': 2 } });
    assert.deepEqual(one(String.raw`m,device=d s="back\slash # = ,",v=3`, ignore).metrics, { 'm.v': 3 });
    // The reference's own example of quotes inside a string value.
    assert.deepEqual(one(String.raw`myMeasurement,device=d fieldKey="\"string\" within a string",n=1i`, ignore).metrics, { 'myMeasurement.n': 1 });
  });

  it('yields nothing for a line whose fields are all dropped strings', () => {
    const readings = parse('m,device=a x=1\nm,device=b s="only",t="strings"\nm,device=c x=3', { stringFields: 'ignore' });
    assert.deepEqual(readings.map((r) => r.device), ['a', 'c']);
  });
});

describe('line protocol: invalid values', () => {
  const invalid = [
    '1.2.3', '1e', '1e+', '.', '-', '+1', '0x10', '1_000', '1f', '--1', '1ee5', '.e5', '1e5.5', '1x5',
    '1.5i', '1e3i', 'i', '-i', '12ii', '1.5u', 'u', 'tru', 'yes', 'TRue', 'null', "'1'", '1"',
  ];
  for (const text of invalid) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      assertFails(`m,device=d a=1\nm,device=d f=${text}`, 2, /^invalid value '.*' for field 'f'/);
    });
  }

  for (const text of ['NaN', 'nan', '-NaN', 'Inf', '+Inf', '-Inf', 'inf', 'Infinity', '-infinity']) {
    it(`rejects ${text} as not a valid float`, () => {
      assertFails(`m,device=d f=${text}`, 1, /NaN and Infinity are not valid line protocol floats/);
    });
  }

  it('rejects integers that a JS number cannot hold exactly', () => {
    for (const text of ['9007199254740992i', '-9007199254740992i', '9223372036854775807i', '-9223372036854775808i', '9007199254740992u', '18446744073709551615u', '1' + '0'.repeat(400) + 'i']) {
      assertFails(`m,device=d f=${text}`, 1, /is beyond ±\(2\^53−1\) and cannot be represented exactly/);
    }
  });

  it('rejects negative unsigned integers', () => {
    assertFails('m,device=d f=-1u', 1, "unsigned integer '-1u' of field 'f' is negative");
    assertFails('m,device=d f=-0u', 1, /is negative/);
  });

  it('rejects floats that overflow to Infinity', () => {
    assertFails('m,device=d f=1e999', 1, "float '1e999' of field 'f' is out of range");
    assertFails(`m,device=d f=-${'9'.repeat(400)}`, 1, /is out of range/);
  });
});

describe('line protocol: escaping (examples from the InfluxDB reference)', () => {
  it('unescapes spaces and commas in the measurement', () => {
    assert.deepEqual(Object.keys(one(String.raw`my\ Measurement,device=d1 fieldKey=1`).metrics), ['my Measurement.fieldKey']);
    assert.deepEqual(Object.keys(one(String.raw`cpu\,01,device=serverA value=1`).metrics), ['cpu,01.value']);
  });

  it('leaves = and other characters in the measurement alone', () => {
    assert.deepEqual(Object.keys(one('a=b,device=d f=1').metrics), ['a=b.f']);
    assert.deepEqual(Object.keys(one(String.raw`a\=b,device=d f=1`).metrics), [String.raw`a\=b.f`]);
    assert.deepEqual(Object.keys(one(`"q'm",device='d' f=1`).metrics), [`"q'm".f`], 'quotes are part of names');
  });

  it('unescapes spaces, commas and equals signs in tag keys and values', () => {
    const r = one(String.raw`myMeasurement,tag\ Key1=tag\ Value1,device=tag\ Value2\,x\=y fieldKey=100`);
    assert.equal(r.device, 'tag Value2,x=y');
    assert.deepEqual(r.metrics, { 'myMeasurement.fieldKey': 100 });
  });

  it('matches the device tag key after unescaping', () => {
    assert.equal(one(String.raw`m,dev\ id\=1=x f=1`, { deviceTag: 'dev id=1' }).device, 'x');
    assert.equal(one(String.raw`m,dev\ id=x,devid=y f=1`, { deviceTag: 'devid' }).device, 'y');
  });

  it('unescapes spaces, commas and equals signs in field keys', () => {
    assert.deepEqual(one(String.raw`m,device=d field\ key\,with\=specials=1,plain=2`).metrics, {
      'm.field key,with=specials': 1,
      'm.plain': 2,
    });
  });

  it('accepts emojis and other characters without escaping', () => {
    const r = one('myMeasurement,device=🍭 fieldKey=1,ünïcode=2 1556813561098000000');
    assert.equal(r.device, '🍭');
    assert.deepEqual(r.metrics, { 'myMeasurement.fieldKey': 1, 'myMeasurement.ünïcode': 2 });
  });

  it('follows the reference table for backslashes', () => {
    // | `\` → `\` | `\\` → `\` | `\\\` → `\\` | `\\\\` → `\\` | `\\\\\` → `\\\` | `\\\\\\` → `\\\` |
    const table: [number, number][] = [[1, 1], [2, 1], [3, 2], [4, 2], [5, 3], [6, 3]];
    for (const [written, meant] of table) {
      const bs = '\\'.repeat(written);
      const r = one(`m${bs}x,device=a${bs}b f${bs}g=1`);
      assert.equal(r.device, `a${'\\'.repeat(meant)}b`, `${written} backslashes in a tag value`);
      assert.deepEqual(Object.keys(r.metrics), [`m${'\\'.repeat(meant)}x.f${'\\'.repeat(meant)}g`], `${written} backslashes`);
    }
  });

  it('keeps a backslash before a character that needs no escaping', () => {
    assert.equal(one(String.raw`m,device=C:\temp\new f=1`).device, String.raw`C:\temp\new`);
    assert.equal(one(String.raw`m,device=ends\\ f=1`).device, 'ends\\', 'an escaped backslash can end a value');
  });
});

describe('line protocol: timestamps', () => {
  const ts = (text: string, precision: Precision) => one(`m,device=d f=1 ${text}`, { precision }).ts;

  it('converts ns to µs exactly, flooring sub-µs digits toward −infinity', () => {
    assert.equal(ts('1556813561098000000', 'ns'), 1556813561098000);
    assert.equal(ts('1556813561098000999', 'ns'), 1556813561098000);
    assert.equal(ts('1556813561098001000', 'ns'), 1556813561098001);
    assert.equal(ts('999', 'ns'), 0);
    assert.equal(ts('0000000000000000000', 'ns'), 0);
    assert.equal(ts('-1', 'ns'), -1);
    assert.equal(ts('-999', 'ns'), -1);
    assert.equal(ts('-1000', 'ns'), -1);
    assert.equal(ts('-1001', 'ns'), -2);
    assert.equal(ts('-1556813561098000001', 'ns'), -1556813561098001);
    assert.ok(Object.is(ts('-0', 'ns'), 0));
    assert.equal(ts('9007199254740991999', 'ns'), MAX_SAFE);
    assert.equal(ts('-9007199254740991000', 'ns'), -MAX_SAFE);
  });

  it('converts us, ms and s', () => {
    assert.equal(ts('1556813561098000', 'us'), 1556813561098000);
    assert.equal(ts('-5', 'us'), -5);
    assert.equal(ts('1556813561098', 'ms'), 1556813561098000);
    assert.equal(ts('-1', 'ms'), -1000);
    assert.equal(ts('1556813561', 's'), 1556813561000000);
    assert.equal(ts('-1', 's'), -1000000);
    assert.equal(ts(String(MAX_SAFE), 'us'), MAX_SAFE);
    assert.equal(ts('9007199254740', 'ms'), 9007199254740000);
    assert.equal(ts('9007199254', 's'), 9007199254000000);
  });

  it('uses nowUs for lines without a timestamp, whatever the precision', () => {
    for (const precision of ['ns', 'us', 'ms', 's'] as const) {
      assert.equal(one('m,device=d f=1', { precision }).ts, NOW_US);
      assert.equal(one('m,device=d f=1   ', { precision }).ts, NOW_US);
    }
  });

  it('rejects timestamps beyond ±(2^53−1) µs', () => {
    const cases: [string, Precision][] = [
      ['9223372036854775806', 'ns'], ['9007199254740992000', 'ns'], ['-9007199254740991001', 'ns'],
      ['9007199254740992', 'us'], ['-9007199254740992', 'us'], ['9007199254741', 'ms'], ['9007199255', 's'],
      ['1' + '0'.repeat(40), 'ns'],
    ];
    for (const [text, precision] of cases) {
      assertFails(`m,device=d f=1 ${text}`, 1, /^timestamp '.*' \(precision \w+\) is out of range/, { precision });
    }
  });

  it('rejects timestamps that are not integers', () => {
    for (const text of ['12.5', '1e9', 'abc', '-', '+5', '0x10', '12,13', '12i', '--1']) {
      assertFails(`m,device=d f=1 ${text}`, 1, `invalid timestamp '${text}': expected an integer`);
    }
  });
});

describe('line protocol: lines, comments and whitespace', () => {
  it('skips blank lines, comments and CRLF endings and counts physical lines', () => {
    const body = '# a comment\n\ncpu,device=a f=1\r\n   \r\n  # indented comment\r\ncpu,device=b f=2 1000\r\n';
    assert.deepEqual(parse(body), [
      { device: 'a', ts: NOW_US, metrics: { 'cpu.f': 1 } },
      { device: 'b', ts: 1, metrics: { 'cpu.f': 2 } },
    ]);
    assertFails('# c\n\r\n\ncpu,device=a f=1\r\ncpu,device=b f=?\r\n', 5, /for field 'f'/);
  });

  it('returns nothing for an empty body or one of comments only', () => {
    assert.deepEqual(parse(''), []);
    assert.deepEqual(parse('\n\r\n# only\n   # comments\n'), []);
  });

  it('accepts leading, repeated and trailing spaces between sections', () => {
    assert.deepEqual(one('  m,device=d   f=1,g=2    3000   '), { device: 'd', ts: 3, metrics: { 'm.f': 1, 'm.g': 2 } });
  });

  it('treats a carriage return inside a line as content, not a line end', () => {
    assertFails('m,device=d f=1\r2', 1, /invalid value '1\r2'/);
  });

  it('keeps lines of the same device and timestamp as separate readings', () => {
    const readings = parse('cpu,device=d a=1 5000\nmem,device=d b=2 5000\ncpu,device=d a=3 5000');
    assert.deepEqual(readings, [
      { device: 'd', ts: 5, metrics: { 'cpu.a': 1 } },
      { device: 'd', ts: 5, metrics: { 'mem.b': 2 } },
      { device: 'd', ts: 5, metrics: { 'cpu.a': 3 } },
    ]);
    assert.notEqual(readings[0], readings[2]);
  });

  it('lets the last of duplicate field keys win', () => {
    assert.deepEqual(one('m,device=d f=1,g=2,f=3').metrics, { 'm.f': 3, 'm.g': 2 });
    const ignore = { stringFields: 'ignore' } as const;
    assert.deepEqual(one('m,device=d f=1,g=2,f="s"', ignore).metrics, { 'm.g': 2 }, 'a dropped string still replaces');
    assert.deepEqual(parse('m,device=d f=1,f="s"', ignore), []);
    assert.deepEqual(one('m,device=d f="s",f=4', ignore).metrics, { 'm.f': 4 });
  });

  it("names metrics by field only with metricNaming: 'field'", () => {
    assert.deepEqual(one('cpu,device=d usage=1,idle=2', { metricNaming: 'field' }).metrics, { usage: 1, idle: 2 });
  });

  it('stores awkward field keys as own properties', () => {
    const metrics = one('m,device=d __proto__=1,constructor=2,toString=3', { metricNaming: 'field' }).metrics;
    assert.deepEqual(Object.entries(metrics), [['__proto__', 1], ['constructor', 2], ['toString', 3]]);
    assert.equal(Object.getPrototypeOf(metrics), Object.prototype);
  });

  it('ignores tags other than the device tag', () => {
    assert.deepEqual(one('m,host=a,device=d,region=eu f=1'), { device: 'd', ts: NOW_US, metrics: { 'm.f': 1 } });
  });
});

describe('line protocol: errors carry the line number and a helpful detail', () => {
  const ok = 'm,device=d f=1\n# comment\n';
  const cases: [string, string | RegExp][] = [
    [',device=a f=1', 'missing measurement name'],
    ['cpu,=a,device=b f=1', `expected tag key after ','`],
    ['cpu, f=1', `expected tag key after ','`],
    ['cpu,device=a, f=1', `expected tag key after ','`],
    ['cpu,host,device=a f=1', `expected '=' after tag key 'host'`],
    ['cpu,host f=1', `expected '=' after tag key 'host'`],
    ['cpu,host=,device=a f=1', `missing value for tag 'host'`],
    ['cpu,host=a=b,device=a f=1', `unescaped '=' in value of tag 'host'`],
    ['cpu,device=a', /^missing fields/],
    ['cpu,device=a   ', /^missing fields/],
    ['cpu', /^missing fields/],
    ['cpu,host=a f=1', `missing tag 'device'`],
    ['cpu f=1', `missing tag 'device'`],
    ['cpu,device=a,device=b f=1', `duplicate tag 'device'`],
    ['cpu,device=a =1', 'expected field key'],
    ['cpu,device=a f=1,', `expected field key after ','`],
    ['cpu,device=a f=1, g=2', `expected field key after ','`],
    ['cpu,device=a f=1,,g=2', `expected field key after ','`],
    ['cpu,device=a f', `expected '=' after field key 'f'`],
    ['cpu,device=a f 1', `expected '=' after field key 'f'`],
    ['cpu,device=a f,g=1', `expected '=' after field key 'f'`],
    ['cpu,device=a f=', `missing value for field 'f'`],
    ['cpu,device=a f=,g=1', `missing value for field 'f'`],
    ['cpu,device=a f= 1', `missing value for field 'f'`],
    ['cpu,device=a f="abc', `unterminated string value for field 'f' (missing closing '"')`],
    [String.raw`cpu,device=a f="abc\"`, /^unterminated string value for field 'f'/],
    ['cpu,device=a f="abc"x', `unexpected 'x' after the string value of field 'f'`],
    ['cpu,device=a f=1 123 456', `unexpected text '456' after the timestamp`],
    ['cpu,device=a f=1 123 garbage here', `unexpected text 'garbage here' after the timestamp`],
    ['cpu,device=a f=1 garbage', `invalid timestamp 'garbage': expected an integer`],
  ];
  for (const [line, detail] of cases) {
    it(JSON.stringify(line), () => {
      assertFails(ok + line + '\n' + ok, 3, detail, { stringFields: 'ignore' });
    });
  }

  it('reports the first bad line', () => {
    assertFails('m,device=d f=1\nbad\nm,device=d f=2\nbad too', 2, /^missing fields/);
  });

  it('is an Error with a name, line and detail', () => {
    const err = new LineProtocolError(7, 'something');
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'LineProtocolError');
    assert.equal(err.message, 'line 7: something');
    assert.equal(err.detail, 'something');
  });

  it('rejects invalid options as programming errors, not input errors', () => {
    assert.throws(() => parse('m,device=d f=1', { nowUs: 1.5 }), TypeError);
    assert.throws(() => parse('m,device=d f=1', { deviceTag: '' }), TypeError);
    assert.throws(() => parse('m,device=d f=1', { precision: 'h' as Precision }), TypeError);
  });
});

// ---- property tests ----------------------------------------------------------------------

/** A correct serializer, written from the reference independently of the parser. */
const escapeMeasurement = (s: string) => s.replace(/[\\, ]/g, (c) => `\\${c}`);
const escapeKey = (s: string) => s.replace(/[\\,= ]/g, (c) => `\\${c}`);
const escapeString = (s: string) => s.replace(/[\\"]/g, (c) => `\\${c}`);

// Names: any text but a newline, biased toward the characters that need care.
const specialChar = fc.constantFrom(',', ' ', '=', '\\', '"', "'", '#', '.', '\t', '\r', '_', '-', 'i', 'u', 't', '0', 'é', '🍭');
const nameChar = fc.oneof(specialChar, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }));
const text = (minLength: number) => fc.string({ unit: nameChar, minLength, maxLength: 10 }).map((s) => s.replace(/\n/g, 'n'));
const measurementArb = fc.oneof(fc.constantFrom('cpu', 'mem'), text(1).filter((s) => !s.startsWith('#')));
const keyArb = fc.oneof(fc.constantFrom('value', 'temp', 'x', '__proto__', 'constructor'), text(1));

type Field = { key: string; text: string; value: number | 'string' };
const BOOLEANS = ['t', 'T', 'true', 'True', 'TRUE', 'f', 'F', 'false', 'False', 'FALSE'];

function floatText(v: number, style: number): string {
  if (v === 0) return Object.is(v, -0) ? ['-0', '-0.', '-.0', '-0e0'][style % 4]! : ['0', '0.', '.0', '0E+5'][style % 4]!;
  switch (style % 4) {
    case 0: return String(v);
    case 1: return v.toExponential();
    case 2: return v.toExponential().toUpperCase();
    default: {
      const s = String(v);
      if (/^-?\d+$/.test(s)) return `${s}.`; // "1." is a float
      return s.replace(/^(-?)0\./, '$1.'); // ".5" is a float
    }
  }
}

const fieldArb: fc.Arbitrary<Field> = fc.tuple(keyArb, fc.oneof(
  fc.tuple(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.nat()).map(([v, style]) => ({ text: floatText(v, style), value: v })),
  fc.maxSafeInteger().map((v) => ({ text: `${v}i`, value: v })),
  fc.maxSafeNat().map((v) => ({ text: `${v}u`, value: v })),
  fc.constantFrom(...BOOLEANS).map((b) => ({ text: b, value: 'tT'.includes(b[0]!) ? 1 : 0 })),
  fc.string({ unit: nameChar, maxLength: 10 }).map((s) => ({ text: `"${escapeString(s.replace(/\n/g, 'n'))}"`, value: 'string' as const })),
)).map(([key, v]) => ({ key, ...v }));

const BIG_NS = BigInt(MAX_SAFE) * 1000n;
const timestampArb = (precision: Precision): fc.Arbitrary<{ text: string; us: number }> => {
  switch (precision) {
    case 'ns':
      return fc.oneof(fc.bigInt({ min: -BIG_NS, max: BIG_NS + 999n }), fc.bigInt({ min: -2_000_000_000_000_000_000n, max: 2_000_000_000_000_000_000n }))
        .map((t) => {
          let us = t / 1000n;
          if (t % 1000n < 0n) us -= 1n; // floor
          return { text: String(t), us: Number(us) };
        });
    case 'us':
      return fc.maxSafeInteger().map((t) => ({ text: String(t), us: t }));
    case 'ms':
      return fc.integer({ min: -Math.floor(MAX_SAFE / 1e3), max: Math.floor(MAX_SAFE / 1e3) }).map((t) => ({ text: String(t), us: t * 1e3 }));
    case 's':
      return fc.integer({ min: -Math.floor(MAX_SAFE / 1e6), max: Math.floor(MAX_SAFE / 1e6) }).map((t) => ({ text: String(t), us: t * 1e6 }));
  }
};

const optionsArb: fc.Arbitrary<LineProtocolOptions> = fc.record({
  precision: fc.constantFrom<Precision>('ns', 'us', 'ms', 's'),
  deviceTag: fc.oneof(fc.constant('device'), text(1)),
  metricNaming: fc.constantFrom('measurement.field' as const, 'field' as const),
  stringFields: fc.constantFrom('reject' as const, 'ignore' as const),
  nowUs: fc.maxSafeInteger(),
});

type Point = { measurement: string; device: string; tags: [string, string][]; devicePosition: number; fields: Field[]; ts: { text: string; us: number } | null };
const pointArb = (opts: LineProtocolOptions): fc.Arbitrary<Point> => fc.record({
  measurement: measurementArb,
  device: text(1),
  tags: fc.array(fc.tuple(keyArb.filter((k) => k !== opts.deviceTag), text(1)), { maxLength: 3 }),
  devicePosition: fc.nat(),
  fields: fc.array(fieldArb, { minLength: 1, maxLength: 5 }),
  ts: fc.option(timestampArb(opts.precision), { nil: null }),
});

type Decor = { lead: string; gap1: string; gap2: string; trail: string; eol: string; before: string[] };
const decorArb: fc.Arbitrary<Decor> = fc.record({
  lead: fc.constantFrom('', '', ' '),
  gap1: fc.constantFrom(' ', ' ', '  '),
  gap2: fc.constantFrom(' ', ' ', '  '),
  trail: fc.constantFrom('', '', ' '),
  eol: fc.constantFrom('\n', '\r\n'),
  before: fc.array(fc.oneof(fc.constant(''), fc.constant('   '), text(0).map((c) => `# ${c}`), text(0).map((c) => `  #${c}`)), { maxLength: 2 }),
});

function serialize(p: Point, opts: LineProtocolOptions, d: Decor): string {
  const tags = p.tags.map(([k, v]) => `,${escapeKey(k)}=${escapeKey(v)}`);
  tags.splice(p.devicePosition % (tags.length + 1), 0, `,${escapeKey(opts.deviceTag)}=${escapeKey(p.device)}`);
  const fields = p.fields.map((f) => `${escapeKey(f.key)}=${f.text}`).join(',');
  const ts = p.ts === null ? '' : `${d.gap2}${p.ts.text}`;
  return `${d.lead}${escapeMeasurement(p.measurement)}${tags.join('')}${d.gap1}${fields}${ts}${d.trail}`;
}

function expectedReading(p: Point, opts: LineProtocolOptions): ReadingInput | null {
  const metrics = new Map<string, number>();
  for (const f of p.fields) {
    const name = opts.metricNaming === 'field' ? f.key : `${p.measurement}.${f.key}`;
    if (f.value === 'string') metrics.delete(name);
    else metrics.set(name, f.value);
  }
  if (metrics.size === 0) return null;
  return { device: p.device, ts: p.ts === null ? opts.nowUs : p.ts.us, metrics: Object.fromEntries(metrics) };
}

const bodyArb = optionsArb.chain((opts) => fc.tuple(fc.constant(opts), fc.array(fc.tuple(pointArb(opts), decorArb), { maxLength: 8 })));

function render(opts: LineProtocolOptions, points: [Point, Decor][]): { body: string; expected: ReadingInput[]; firstStringLine: number | null } {
  let body = '';
  let line = 0;
  let firstStringLine: number | null = null;
  const expected: ReadingInput[] = [];
  for (const [p, d] of points) {
    for (const extra of d.before) {
      body += extra + d.eol;
      line++;
    }
    body += serialize(p, opts, d) + d.eol;
    line++;
    if (firstStringLine === null && p.fields.some((f) => f.value === 'string')) firstStringLine = line;
    const reading = expectedReading(p, opts);
    if (reading !== null) expected.push(reading);
  }
  return { body, expected, firstStringLine };
}

describe('line protocol: properties', () => {
  it('parses what a correct serializer writes, for random points of every type', () => {
    fc.assert(
      fc.property(bodyArb, ([opts, points]) => {
        const { body, expected, firstStringLine } = render(opts, points);
        if (opts.stringFields === 'reject' && firstStringLine !== null) {
          assert.throws(() => parseLineProtocol(body, opts), (err: unknown) => err instanceof LineProtocolError && err.line === firstStringLine);
        } else {
          assert.deepStrictEqual(parseLineProtocol(body, opts), expected);
        }
      }),
      { numRuns: 500 },
    );
  });

  const lpChar = fc.constantFrom(',', ' ', '=', '\\', '"', '#', '\n', '\r', '.', '-', '+', 'e', 'E', 'i', 'u', 't', 'f', 'N', 'I', '0', '1', '9', 'device', 'm');
  const arbitraryBody = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.string({ unit: fc.oneof(lpChar, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: 80 }),
    fc.string({ unit: lpChar, maxLength: 80 }).map((s) => `m,device=${s}`),
  );

  function checkNeverThrowsOther(body: string, opts: LineProtocolOptions): void {
    let readings: ReadingInput[];
    try {
      readings = parseLineProtocol(body, opts);
    } catch (err) {
      if (!(err instanceof LineProtocolError)) throw err;
      assert.ok(Number.isInteger(err.line) && err.line >= 1 && err.line <= body.split('\n').length, `line ${err.line} out of bounds`);
      return;
    }
    for (const r of readings) {
      assert.ok(r.device.length > 0);
      assert.ok(Number.isSafeInteger(r.ts));
      for (const v of Object.values(r.metrics)) assert.ok(Number.isFinite(v));
    }
  }

  it('never throws anything but LineProtocolError on arbitrary strings', () => {
    fc.assert(fc.property(arbitraryBody, optionsArb, (body, opts) => checkNeverThrowsOther(body, opts)), { numRuns: 2000 });
  });

  it('never throws anything but LineProtocolError on corrupted valid bodies', () => {
    const edit = fc.tuple(fc.nat(), fc.constantFrom('insert', 'delete', 'replace'), fc.oneof(lpChar, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })));
    fc.assert(
      fc.property(bodyArb, fc.array(edit, { minLength: 1, maxLength: 4 }), ([opts, points], edits) => {
        let { body } = render(opts, points);
        for (const [at, op, ch] of edits) {
          const i = body.length === 0 ? 0 : at % body.length;
          body = op === 'insert' ? body.slice(0, i) + ch + body.slice(i)
            : op === 'delete' ? body.slice(0, i) + body.slice(i + 1)
            : body.slice(0, i) + ch + body.slice(i + 1);
        }
        checkNeverThrowsOther(body, opts);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('line protocol: a full-size body', () => {
  it('parses 5,000 lines', () => {
    const lines: string[] = [];
    for (let i = 0; i < 5000; i++) {
      lines.push(`env,device=dev-${i % 100},site=lab temp=${(20 + (i % 50) / 10).toFixed(1)},hum=${40 + (i % 20)}i,ok=t ${1_700_000_000_000_000_000n + BigInt(i) * 1_000_000_000n}`);
    }
    const readings = parse(lines.join('\n'));
    assert.equal(readings.length, 5000);
    assert.deepEqual(readings[4999], { device: 'dev-99', ts: 1_700_004_999_000_000, metrics: { 'env.temp': 24.9, 'env.hum': 59, 'env.ok': 1 } });
  });
});
