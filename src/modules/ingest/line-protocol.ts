/**
 * InfluxDB line protocol (the 1.x / 2.x write format) → ReadingInput[].
 *
 *   measurement[,tag=value...] field=value[,field=value...] [timestamp]
 *
 * Pure and synchronous: a hot path (5,000-line bodies), so it walks the body once with
 * charCodeAt, slices a token only when its text is needed (tags other than the device
 * tag are checked but never copied) and unescapes only tokens that contain escapes.
 *
 * Choices where the reference is silent or the Go implementations disagree:
 * - Backslashes follow the reference's "Escaping backslashes" table in every element:
 *   `\\` is one backslash, a backslash before any character that is not special in that
 *   element stays literal (`\n` is two characters). So any name, including one ending
 *   in a backslash, can be written. (InfluxDB 1.x keeps `\\` as two characters.)
 * - Floats use the reference grammar: `-`? digits with at most one `.` and at least one
 *   digit (`1`, `1.`, `.5`, `-.5`), optional exponent `e`/`E`, sign, digits. No leading
 *   `+`, no hex, no `_`; NaN/Inf are rejected, as is a float that overflows to ±Infinity.
 * - Integers (`12i`) and unsigned integers (`12u`) must fit in ±(2^53−1)
 *   (Number.isSafeInteger): beyond that a JS number is no longer exact.
 * - Timestamps become integer epoch µs; ns are floored (toward −∞), so a negative ns
 *   timestamp lands in the microsecond that contains it. The result must be a safe
 *   integer (|µs| ≤ 2^53−1, i.e. up to the year 2255), else the line is rejected.
 *   Lines without a timestamp get `nowUs` unchanged (not truncated to the precision).
 * - Leading spaces, several spaces between sections and trailing spaces are accepted
 *   (as InfluxDB does); a line holding only spaces is blank; `#` after leading spaces is
 *   a comment. Only one `\r` directly before `\n` (or the end) is stripped.
 * - Tags other than the device tag are validated for syntax and otherwise dropped; only
 *   a repeated device tag is an error. Names starting with `_` are not rejected here.
 * - Duplicate field keys: the last wins — including a string that `stringFields:
 *   'ignore'` then drops, which removes the earlier value of that key.
 */
import type { ReadingInput } from '../readings/types.ts';

export type Precision = 'ns' | 'us' | 'ms' | 's';

export interface LineProtocolOptions {
  /** Precision of the timestamps in the body. */
  precision: Precision;
  /** Tag whose value is the device id, e.g. 'device'. */
  deviceTag: string;
  /** Metric name: `${measurement}.${field}` or just the field key. */
  metricNaming: 'measurement.field' | 'field';
  /** String field values: fail the body, or drop just that field. */
  stringFields: 'reject' | 'ignore';
  /** Timestamp (epoch µs, integer) for lines without one. */
  nowUs: number;
}

export class LineProtocolError extends Error {
  /** 1-based physical line number in the body. */
  readonly line: number;
  readonly detail: string;
  constructor(line: number, detail: string) {
    super(`line ${line}: ${detail}`);
    this.name = 'LineProtocolError';
    this.line = line;
    this.detail = detail;
  }
}

const CR = 13;
const SPACE = 32;
const QUOTE = 34;
const HASH = 35;
const COMMA = 44;
const MINUS = 45;
const DOT = 46;
const ZERO = 48;
const NINE = 57;
const EQ = 61;
const BSLASH = 92;
const LOWER_E = 101;
const UPPER_E = 69;
const PLUS = 43;
const LOWER_I = 105;
const LOWER_U = 117;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
// Exact doubles, so mantissa / POW10[k] is correctly rounded (mantissa < 2^53, k ≤ 22).
const POW10 = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
const PRECISION_FACTOR: Record<Precision, number> = { ns: 0, us: 1, ms: 1e3, s: 1e6 };

export function parseLineProtocol(body: string, opts: LineProtocolOptions): ReadingInput[] {
  if (!(opts.precision in PRECISION_FACTOR)) throw new TypeError(`invalid precision '${String(opts.precision)}'`);
  if (typeof opts.deviceTag !== 'string' || opts.deviceTag.length === 0) throw new TypeError('deviceTag must be a non-empty string');
  if (!Number.isSafeInteger(opts.nowUs)) throw new TypeError('nowUs must be a safe integer');
  return new Parser(body, opts).parse();
}

class Parser {
  private readonly src: string;
  private readonly deviceTag: string;
  private readonly prefixMeasurement: boolean;
  private readonly rejectStrings: boolean;
  private readonly tsFactor: number;
  private readonly nowUs: number;
  private readonly precision: Precision;

  private line = 0;
  private pos = 0;
  private end = 0;
  // The identifier scanKey() found last.
  private tokEnd = 0;
  private tokEscaped = false;
  // The field being parsed, for error messages.
  private keyStart = 0;
  private keyEnd = 0;
  private keyEscaped = false;

  // The previous line's measurement and metric names: bodies repeat the same few
  // measurements and field keys, so comparing in place avoids a slice + concat per field.
  private prevMeasurementRaw = '';
  private prevMeasurement = '';
  private prevKeysRaw: string[] = [];
  private prevNames: string[] = [];

  constructor(src: string, opts: LineProtocolOptions) {
    this.src = src;
    this.deviceTag = opts.deviceTag;
    this.prefixMeasurement = opts.metricNaming === 'measurement.field';
    this.rejectStrings = opts.stringFields === 'reject';
    this.tsFactor = PRECISION_FACTOR[opts.precision];
    this.nowUs = opts.nowUs;
    this.precision = opts.precision;
  }

  parse(): ReadingInput[] {
    const s = this.src;
    const n = s.length;
    const out: ReadingInput[] = [];
    let start = 0;
    let line = 0;
    for (;;) {
      let nl = s.indexOf('\n', start);
      if (nl === -1) nl = n;
      line++;
      let end = nl;
      if (end > start && s.charCodeAt(end - 1) === CR) end--;
      let p = start;
      while (p < end && s.charCodeAt(p) === SPACE) p++;
      if (p < end && s.charCodeAt(p) !== HASH) {
        this.line = line;
        this.pos = p;
        this.end = end;
        const reading = this.parseLine();
        if (reading !== null) out.push(reading);
      }
      if (nl >= n) return out;
      start = nl + 1;
    }
  }

  private parseLine(): ReadingInput | null {
    const s = this.src;
    const end = this.end;

    const mStart = this.pos;
    this.scanKey(false);
    if (this.tokEnd === mStart) this.fail('missing measurement name');
    const measurement = this.prefixMeasurement ? this.measurementName(mStart, this.tokEnd, this.tokEscaped) : '';

    let device: string | undefined;
    while (this.pos < end && s.charCodeAt(this.pos) === COMMA) {
      this.pos++;
      const kStart = this.pos;
      this.scanKey(true);
      const kEnd = this.tokEnd;
      const kEscaped = this.tokEscaped;
      if (kEnd === kStart) this.fail(`expected tag key after ','`);
      if (this.pos >= end || s.charCodeAt(this.pos) !== EQ) {
        this.fail(`expected '=' after tag key ${quote(this.text(kStart, kEnd, kEscaped, true))}`);
      }
      this.pos++;
      const vStart = this.pos;
      this.scanKey(true);
      if (this.tokEnd === vStart) this.fail(`missing value for tag ${quote(this.text(kStart, kEnd, kEscaped, true))}`);
      if (this.pos < end && s.charCodeAt(this.pos) === EQ) {
        this.fail(`unescaped '=' in value of tag ${quote(this.text(kStart, kEnd, kEscaped, true))}`);
      }
      if (this.isDeviceKey(kStart, kEnd, kEscaped)) {
        if (device !== undefined) this.fail(`duplicate tag ${quote(this.deviceTag)}`);
        device = this.text(vStart, this.tokEnd, this.tokEscaped, true);
      }
    }

    while (this.pos < end && s.charCodeAt(this.pos) === SPACE) this.pos++;
    if (this.pos >= end) this.fail('missing fields: expected a space then field=value after the measurement and tags');
    if (device === undefined) this.fail(`missing tag ${quote(this.deviceTag)}`);

    const metrics: Record<string, number> = {};
    let droppedString = false;
    for (let index = 0; ; index++) {
      const kStart = this.pos;
      this.scanKey(true);
      this.keyStart = kStart;
      this.keyEnd = this.tokEnd;
      this.keyEscaped = this.tokEscaped;
      if (this.keyEnd === kStart) this.fail(index === 0 ? 'expected field key' : `expected field key after ','`);
      if (this.pos >= end || s.charCodeAt(this.pos) !== EQ) this.fail(`expected '=' after field key ${quote(this.fieldKey())}`);
      this.pos++;
      if (this.pos >= end) this.fail(`missing value for field ${quote(this.fieldKey())}`);

      if (s.charCodeAt(this.pos) === QUOTE) {
        this.skipString();
        if (this.rejectStrings) {
          this.fail(`field ${quote(this.fieldKey())} has a string value; only numbers and booleans can be stored`);
        }
        const name = this.metricName(index, measurement);
        if (Object.hasOwn(metrics, name)) delete metrics[name];
        droppedString = true;
        if (this.pos < end) {
          const c = s.charCodeAt(this.pos);
          if (c !== COMMA && c !== SPACE) {
            this.fail(`unexpected ${quote(s[this.pos] ?? '')} after the string value of field ${quote(this.fieldKey())}`);
          }
        }
      } else {
        const vStart = this.pos;
        let i = vStart;
        while (i < end) {
          const c = s.charCodeAt(i);
          if (c === COMMA || c === SPACE) break;
          i++;
        }
        if (i === vStart) this.fail(`missing value for field ${quote(this.fieldKey())}`);
        this.pos = i;
        const value = this.parseValue(vStart, i);
        const name = this.metricName(index, measurement);
        if (name === '__proto__') {
          Object.defineProperty(metrics, name, { value, enumerable: true, writable: true, configurable: true });
        } else {
          metrics[name] = value;
        }
      }

      if (this.pos >= end || s.charCodeAt(this.pos) === SPACE) break;
      this.pos++; // the comma
    }

    while (this.pos < end && s.charCodeAt(this.pos) === SPACE) this.pos++;
    let ts = this.nowUs;
    if (this.pos < end) {
      const tStart = this.pos;
      let i = tStart;
      while (i < end && s.charCodeAt(i) !== SPACE) i++;
      ts = this.parseTimestamp(tStart, i);
      while (i < end && s.charCodeAt(i) === SPACE) i++;
      if (i < end) this.fail(`unexpected text ${quote(s.slice(i, end))} after the timestamp`);
    }

    if (droppedString && !hasOwnKey(metrics)) return null;
    return { device, ts, metrics };
  }

  /** Scans a measurement (eqSpecial false) or a tag key/value or field key up to an unescaped delimiter. */
  private scanKey(eqSpecial: boolean): void {
    const s = this.src;
    const end = this.end;
    let escaped = false;
    let i = this.pos;
    for (; i < end; i++) {
      const c = s.charCodeAt(i);
      if (c > BSLASH) continue; // letters, '_' and everything non-ASCII: the common case
      if (c === COMMA || c === SPACE) break;
      if (c === EQ) {
        if (eqSpecial) break;
      } else if (c === BSLASH && i + 1 < end && isEscapable(s.charCodeAt(i + 1), eqSpecial)) {
        escaped = true;
        i++;
      }
    }
    this.tokEnd = i;
    this.tokEscaped = escaped;
    this.pos = i;
  }

  /** The text of an identifier token, unescaped if needed. */
  private text(a: number, b: number, escaped: boolean, eqSpecial: boolean): string {
    const s = this.src;
    if (!escaped) return s.slice(a, b);
    let out = '';
    let seg = a;
    for (let i = a; i < b - 1; i++) {
      if (s.charCodeAt(i) === BSLASH && isEscapable(s.charCodeAt(i + 1), eqSpecial)) {
        out += s.slice(seg, i);
        seg = i + 1; // keep the escaped character, drop the backslash
        i++;
      }
    }
    return out + s.slice(seg, b);
  }

  private measurementName(a: number, b: number, escaped: boolean): string {
    const raw = this.prevMeasurementRaw;
    if (b - a === raw.length && this.src.startsWith(raw, a)) return this.prevMeasurement;
    const name = this.text(a, b, escaped, false);
    this.prevMeasurementRaw = this.src.slice(a, b);
    this.prevMeasurement = name;
    this.prevKeysRaw = [];
    this.prevNames = [];
    return name;
  }

  /** Metric name of the current field, reusing the previous line's when the raw key matches. */
  private metricName(index: number, measurement: string): string {
    const a = this.keyStart;
    const b = this.keyEnd;
    const raw = this.prevKeysRaw[index];
    if (raw !== undefined && b - a === raw.length && this.src.startsWith(raw, a)) {
      return this.prevNames[index] as string;
    }
    const key = this.fieldKey();
    const name = this.prefixMeasurement ? `${measurement}.${key}` : key;
    if (index < 64) {
      this.prevKeysRaw[index] = this.src.slice(a, b);
      this.prevNames[index] = name;
    }
    return name;
  }

  private fieldKey(): string {
    return this.text(this.keyStart, this.keyEnd, this.keyEscaped, true);
  }

  private isDeviceKey(a: number, b: number, escaped: boolean): boolean {
    const tag = this.deviceTag;
    if (!escaped) return b - a === tag.length && this.src.startsWith(tag, a);
    return this.text(a, b, true, true) === tag;
  }

  /** Moves past a double-quoted string value; `\"` and `\\` are its only escapes. */
  private skipString(): void {
    const s = this.src;
    const end = this.end;
    let i = this.pos + 1;
    for (;;) {
      if (i >= end) this.fail(`unterminated string value for field ${quote(this.fieldKey())} (missing closing '"')`);
      const c = s.charCodeAt(i);
      if (c === QUOTE) break;
      if (c === BSLASH && i + 1 < end) {
        const d = s.charCodeAt(i + 1);
        if (d === QUOTE || d === BSLASH) i++;
      }
      i++;
    }
    this.pos = i + 1;
  }

  private parseValue(a: number, b: number): number {
    const s = this.src;
    const c = s.charCodeAt(a);
    if ((c >= ZERO && c <= NINE) || c === MINUS || c === DOT) {
      const last = s.charCodeAt(b - 1);
      if (last === LOWER_I) return this.parseInteger(a, b - 1, true);
      if (last === LOWER_U) return this.parseInteger(a, b - 1, false);
      return this.parseFloat(a, b);
    }
    switch (s.slice(a, b)) {
      case 't': case 'T': case 'true': case 'True': case 'TRUE':
        return 1;
      case 'f': case 'F': case 'false': case 'False': case 'FALSE':
        return 0;
    }
    this.invalidValue(a, b);
  }

  private parseInteger(a: number, b: number, signed: boolean): number {
    const s = this.src;
    let i = a;
    const negative = s.charCodeAt(i) === MINUS;
    if (negative) {
      if (!signed) this.fail(`unsigned integer ${quote(s.slice(a, b + 1))} of field ${quote(this.fieldKey())} is negative`);
      i++;
    }
    if (i >= b) this.invalidValue(a, b + 1);
    let v = 0;
    for (; i < b; i++) {
      const d = s.charCodeAt(i) - ZERO;
      if (d < 0 || d > 9) this.invalidValue(a, b + 1);
      v = v * 10 + d;
    }
    // Once v passes 2^53−1 the sum is inexact, but only ever rounds to a value ≥ 2^53.
    if (v > MAX_SAFE) {
      this.fail(`${signed ? 'integer' : 'unsigned integer'} ${quote(s.slice(a, b + 1))} of field ${quote(this.fieldKey())} is beyond ±(2^53−1) and cannot be represented exactly`);
    }
    return negative && v !== 0 ? -v : v;
  }

  private parseFloat(a: number, b: number): number {
    const s = this.src;
    let i = a;
    const negative = s.charCodeAt(i) === MINUS;
    if (negative) i++;
    let mantissa = 0;
    let digits = 0;
    let fraction = 0;
    let dot = false;
    for (; i < b; i++) {
      const c = s.charCodeAt(i);
      if (c >= ZERO && c <= NINE) {
        mantissa = mantissa * 10 + (c - ZERO);
        digits++;
        if (dot) fraction++;
      } else if (c === DOT && !dot) {
        dot = true;
      } else {
        break;
      }
    }
    if (digits === 0) this.invalidValue(a, b);
    if (i === b && digits <= 15) {
      const v = fraction === 0 ? mantissa : mantissa / (POW10[fraction] as number);
      return negative ? -v : v;
    }
    if (i < b) {
      const e = s.charCodeAt(i);
      if (e !== LOWER_E && e !== UPPER_E) this.invalidValue(a, b);
      i++;
      if (i < b && (s.charCodeAt(i) === PLUS || s.charCodeAt(i) === MINUS)) i++;
      if (i >= b) this.invalidValue(a, b);
      for (; i < b; i++) {
        const c = s.charCodeAt(i);
        if (c < ZERO || c > NINE) this.invalidValue(a, b);
      }
    }
    // The grammar above is a subset of what Number() accepts, with the same meaning.
    const v = Number(s.slice(a, b));
    if (!Number.isFinite(v)) this.fail(`float ${quote(s.slice(a, b))} of field ${quote(this.fieldKey())} is out of range`);
    return v;
  }

  private invalidValue(a: number, b: number): never {
    const token = this.src.slice(a, b);
    const key = quote(this.fieldKey());
    if (/^[-+]?(nan|inf|infinity)$/i.test(token)) {
      this.fail(`invalid value ${quote(token)} for field ${key}: NaN and Infinity are not valid line protocol floats`);
    }
    this.fail(`invalid value ${quote(token)} for field ${key}: expected a float (1.5, -1e3), an integer (12i), an unsigned integer (12u), a boolean (t, false, …) or a "string"`);
  }

  private parseTimestamp(a: number, b: number): number {
    const s = this.src;
    let i = a;
    const negative = s.charCodeAt(i) === MINUS;
    if (negative) i++;
    if (i >= b) this.fail(`invalid timestamp ${quote(s.slice(a, b))}: expected an integer`);
    for (let j = i; j < b; j++) {
      const c = s.charCodeAt(j);
      if (c < ZERO || c > NINE) this.fail(`invalid timestamp ${quote(s.slice(a, b))}: expected an integer`);
    }
    let us: number;
    if (this.tsFactor === 0) {
      // ns: the digits but the last three are whole µs; the last three only decide the floor.
      const split = b - 3 > i ? b - 3 : i;
      const whole = digitsValue(s, i, split);
      let subMicro = false;
      for (let j = split; j < b; j++) if (s.charCodeAt(j) !== ZERO) subMicro = true;
      us = negative ? -whole - (subMicro ? 1 : 0) : whole;
    } else {
      const v = digitsValue(s, i, b) * this.tsFactor;
      us = negative ? -v : v;
    }
    // Inexact products only ever round to magnitudes ≥ 2^53, so this check is exact.
    if (!(us <= MAX_SAFE && us >= -MAX_SAFE)) {
      this.fail(`timestamp ${quote(s.slice(a, b))} (precision ${this.precision}) is out of range: it must convert to at most ±(2^53−1) µs`);
    }
    return us === 0 ? 0 : us;
  }

  private fail(detail: string): never {
    throw new LineProtocolError(this.line, detail);
  }
}

function isEscapable(c: number, eqSpecial: boolean): boolean {
  return c === COMMA || c === SPACE || c === BSLASH || (eqSpecial && c === EQ);
}

/** Value of the ASCII digits s[a, b); inexact (but > 2^53−1) once it passes 2^53−1. */
function digitsValue(s: string, a: number, b: number): number {
  let v = 0;
  for (let i = a; i < b; i++) v = v * 10 + (s.charCodeAt(i) - ZERO);
  return v;
}

function hasOwnKey(o: object): boolean {
  for (const k in o) if (Object.hasOwn(o, k)) return true;
  return false;
}

function quote(text: string): string {
  return text.length > 60 ? `'${text.slice(0, 57)}…'` : `'${text}'`;
}
