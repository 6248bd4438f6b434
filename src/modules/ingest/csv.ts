/**
 * Streaming CSV import (RFC 4180: `"` quoting with `""` escapes, separators and line
 * breaks inside quotes, CRLF or LF). The header picks the shape:
 *
 *  - long, header exactly `device,ts,metric,value`: one metric per row. Consecutive rows
 *    with the same device and timestamp are merged into one reading, unless the metric
 *    is already in it (then a new reading starts, so nothing is dropped silently).
 *  - wide, header `device,ts,<metric>,…`: one reading per row; an empty cell means "no
 *    value for that metric", and a row with no value at all is an error. A wide file
 *    whose metrics are exactly `metric,value` reads as long.
 *
 * An empty `ts` cell means `opts.nowUs`; an empty device is an error; values are plain
 * decimals (no hex, no whitespace, no NaN/Infinity). Strict RFC 4180: a quote inside an
 * unquoted field is an error, and a CR not followed by LF is data. Empty lines are
 * skipped. Errors name the physical line (quoted line breaks count); a record spanning
 * lines is reported on its first line.
 *
 * Memory is one text block, one batch and one unfinished record (at most MAX_LINE_BYTES).
 * The first bad record throws an ImportParseError; batches already yielded stay yielded
 * and the batch in progress is dropped.
 */
import type { ReadingInput } from '../readings/types.ts';
import { parseTimestamp } from '../readings/timestamp.ts';
import { ImportParseError } from './import-error.ts';
import {
  InvalidUtf8Error,
  MAX_LINE_BYTES,
  checkParseOptions,
  exceedsLineLimit,
  textBlocks,
  type ParseOptions,
} from './import-input.ts';

export type { ParseOptions } from './import-input.ts';

const QUOTE = 34;
const COMMA = 44;
const LF = 10;
const CR = 13;
const DETAIL_VALUE_MAX = 80;
const PLUS = 43;
const MINUS = 45;
const DOT = 46;
const ZERO = 48;
const NINE = 57;
const LOWER_B = 98;
const LOWER_O = 111;
const LOWER_X = 120;

export async function* parseCsv(
  source: AsyncIterable<Buffer | string>,
  opts: ParseOptions,
): AsyncGenerator<ReadingInput[], void, undefined> {
  checkParseOptions(opts);
  const { batchSize } = opts;
  const records = new RecordScanner();
  let rows: RowReader | undefined;
  let batch: ReadingInput[] = [];
  try {
    for await (const block of textBlocks(source, opts.blockSize)) {
      const final = block === null;
      if (!final) records.append(block);
      while (records.next(final)) {
        if (rows === undefined) {
          rows = headerToReader(records.fields, records.recordLine, opts.nowUs);
          continue;
        }
        const reading = rows.read(records.fields, records.recordLine);
        if (reading === null) continue;
        checkReading(reading, rows.readingLine, opts);
        batch.push(reading);
        if (batch.length === batchSize) {
          yield batch;
          batch = [];
        }
      }
      if (!final && records.bufferedLength > MAX_LINE_BYTES) {
        throw new ImportParseError(records.line, `record longer than ${MAX_LINE_BYTES} bytes`);
      }
    }
  } catch (error) {
    if (error instanceof InvalidUtf8Error) {
      throw new ImportParseError(records.line + records.bufferedLineBreaks(), error.message);
    }
    throw error;
  }
  if (rows === undefined) throw new ImportParseError(1, 'empty input: expected a header line');
  const last = rows.finish();
  if (last !== null) {
    checkReading(last, rows.readingLine, opts);
    batch.push(last);
  }
  if (batch.length > 0) yield batch;
}

/**
 * Splits text into records. Text arrives by `append`; `next` parses one complete record
 * into `fields` or, when the buffered text ends inside a record, keeps that record for
 * the next call and returns false (it is parsed again from its start, which large
 * blocks keep cheap). Fields are slices of the block: nothing is built per character.
 */
function checkReading(reading: ReadingInput, line: number, opts: ParseOptions): void {
  const detail = opts.check?.(reading);
  if (detail) throw new ImportParseError(line, detail);
}

class RecordScanner {
  readonly fields: string[] = [];
  /** Physical line on which the record in `fields` starts. */
  recordLine = 1;
  /** Physical line on which the next record starts. */
  line = 1;
  private text = '';
  private pos = 0;

  get bufferedLength(): number {
    return this.text.length - this.pos;
  }

  bufferedLineBreaks(): number {
    let count = 0;
    for (let i = this.text.indexOf('\n', this.pos); i !== -1; i = this.text.indexOf('\n', i + 1)) count++;
    return count;
  }

  append(block: string): void {
    this.text = this.pos < this.text.length ? this.text.slice(this.pos) + block : block;
    this.pos = 0;
  }

  next(final: boolean): boolean {
    const s = this.text;
    const length = s.length;
    const fields = this.fields;
    let i = this.pos;
    // Skip empty lines ("" or a lone "\r" before the line feed).
    for (;;) {
      if (i === length) return this.stop(i);
      const c = s.charCodeAt(i);
      const lf = c === LF ? i : c === CR && i + 1 < length && s.charCodeAt(i + 1) === LF ? i + 1 : -1;
      if (lf === -1) {
        if (c === CR && i + 1 === length) {
          if (final) return this.stop(length);
          return this.stop(i);
        }
        break;
      }
      i = lf + 1;
      this.line++;
      this.pos = i;
    }

    const start = i;
    let breaks = 0; // line breaks inside quoted fields so far
    fields.length = 0;
    for (;;) {
      if (s.charCodeAt(i) === QUOTE) {
        let value = '';
        let from = i + 1;
        for (;;) {
          const q = s.indexOf('"', from);
          if (q === -1) {
            if (final) throw new ImportParseError(this.line + breaks, 'unterminated quoted field');
            return this.stop(start);
          }
          // A quote that ends the text is taken as closing; the check below then waits for more.
          if (s.charCodeAt(q + 1) === QUOTE) {
            value += s.slice(from, q + 1);
            from = q + 2;
            continue;
          }
          value += s.slice(from, q);
          i = q + 1;
          break;
        }
        for (let k = value.indexOf('\n'); k !== -1; k = value.indexOf('\n', k + 1)) breaks++;
        fields.push(value);
        if (i === length) {
          if (!final) return this.stop(start);
          break;
        }
        const c = s.charCodeAt(i);
        if (c === COMMA) {
          i++;
          continue;
        }
        if (c === LF) {
          i++;
          break;
        }
        if (c === CR && i + 1 === length && !final) return this.stop(start);
        if (c === CR && (i + 1 === length || s.charCodeAt(i + 1) === LF)) {
          i += 2;
          break;
        }
        throw new ImportParseError(this.line + breaks, 'unexpected text after a closing quote');
      } else {
        let j = i;
        let c = 0;
        for (; j < length; j++) {
          c = s.charCodeAt(j);
          if (c === COMMA || c === LF) break;
          if (c === QUOTE) {
            throw new ImportParseError(
              this.line + breaks,
              'quote inside an unquoted field (quote the whole field and double the inner quotes)',
            );
          }
        }
        if (j === length) {
          if (!final) return this.stop(start);
          fields.push(s.charCodeAt(j - 1) === CR && j > i ? s.slice(i, j - 1) : s.slice(i, j));
          i = j;
          break;
        }
        if (c === COMMA) {
          fields.push(s.slice(i, j));
          i = j + 1;
          continue;
        }
        fields.push(s.charCodeAt(j - 1) === CR && j > i ? s.slice(i, j - 1) : s.slice(i, j));
        i = j + 1;
        break;
      }
    }

    this.recordLine = this.line;
    if (i - start > MAX_LINE_BYTES / 3 && exceedsLineLimit(s.slice(start, i).replace(/\r?\n$/, ''))) {
      throw new ImportParseError(this.recordLine, `record longer than ${MAX_LINE_BYTES} bytes`);
    }
    this.line += 1 + breaks;
    this.pos = Math.min(i, length);
    return true;
  }

  private stop(pos: number): false {
    this.pos = pos;
    this.fields.length = 0;
    return false;
  }
}

interface RowReader {
  /** The line on which the reading returned last by read() or finish() started. */
  readonly readingLine: number;
  /** The reading completed by this row, or null if none is complete yet. */
  read(fields: readonly string[], line: number): ReadingInput | null;
  /** The reading still open at the end of input, if any. */
  finish(): ReadingInput | null;
}

function headerToReader(header: readonly string[], line: number, nowUs: number): RowReader {
  const [device, ts, ...metrics] = header;
  if (header.length === 4 && device === 'device' && ts === 'ts' && metrics[0] === 'metric' && metrics[1] === 'value') {
    return new LongRows(nowUs);
  }
  if (device !== 'device' || ts !== 'ts' || metrics.length === 0) {
    throw new ImportParseError(
      line,
      `header must be "device,ts,metric,value" (long form) or "device,ts,<metric>,…" (wide form), got ${clip(JSON.stringify(header.join(',')))}`,
    );
  }
  const seen = new Set<string>();
  for (const name of metrics) {
    if (name === '') throw new ImportParseError(line, 'empty metric name in header');
    if (seen.has(name)) throw new ImportParseError(line, `duplicate metric ${quote(name)} in header`);
    seen.add(name);
  }
  return new WideRows(metrics, nowUs);
}

/** Shared cell conversions; remembers the last device and timestamp since rows often repeat them. */
class Cells {
  private lastDeviceText = '';
  private lastDevice = '';
  private lastTsText = '';
  private lastTs: number;

  constructor(private readonly nowUs: number) {
    this.lastTs = nowUs;
  }

  device(text: string | undefined, line: number): string {
    if (text === this.lastDeviceText) return this.lastDevice;
    if (text === undefined || text === '') throw new ImportParseError(line, 'empty device');
    this.lastDeviceText = text;
    this.lastDevice = detach(text);
    return this.lastDevice;
  }

  ts(text: string, line: number): number {
    if (text === this.lastTsText) return this.lastTs;
    const ts = text === '' ? this.nowUs : parseTimestamp(text);
    if (ts === null) {
      throw new ImportParseError(
        line,
        `ts ${quote(text)} is not an RFC 3339 timestamp or epoch milliseconds (1970–2255)`,
      );
    }
    this.lastTsText = text;
    this.lastTs = ts;
    return ts;
  }

  value(text: string, metric: string, line: number): number {
    const value = parseDecimal(text);
    if (value === null) {
      throw new ImportParseError(line, `metric ${quote(metric)}: ${quote(text)} is not a finite number`);
    }
    return value;
  }
}

class LongRows implements RowReader {
  private readonly cells: Cells;
  private open: ReadingInput | null = null;
  private openLine = 0;
  readingLine = 0;

  constructor(nowUs: number) {
    this.cells = new Cells(nowUs);
  }

  read(fields: readonly string[], line: number): ReadingInput | null {
    if (fields.length !== 4) throw new ImportParseError(line, `expected 4 fields, got ${fields.length}`);
    const device = this.cells.device(fields[0], line);
    const ts = this.cells.ts(fields[1]!, line);
    const metric = fields[2]!;
    const text = fields[3]!;
    if (text === '') throw new ImportParseError(line, `metric ${quote(metric)}: empty value`);
    const value = this.cells.value(text, metric, line);
    const open = this.open;
    if (open !== null && open.device === device && open.ts === ts && !Object.hasOwn(open.metrics, metric)) {
      setMetric(open.metrics, metric, value);
      return null;
    }
    // A computed key defines an own property even for "__proto__".
    this.open = { device, ts, metrics: { [metric]: value } };
    this.readingLine = this.openLine;
    this.openLine = line;
    return open;
  }

  finish(): ReadingInput | null {
    const open = this.open;
    this.open = null;
    this.readingLine = this.openLine;
    return open;
  }
}

class WideRows implements RowReader {
  private readonly cells: Cells;
  private readonly columns: number;
  readingLine = 0;

  constructor(
    private readonly metrics: readonly string[],
    nowUs: number,
  ) {
    this.cells = new Cells(nowUs);
    this.columns = metrics.length + 2;
  }

  read(fields: readonly string[], line: number): ReadingInput {
    if (fields.length !== this.columns) {
      throw new ImportParseError(line, `expected ${this.columns} fields, got ${fields.length}`);
    }
    const device = this.cells.device(fields[0], line);
    const ts = this.cells.ts(fields[1]!, line);
    const metrics: Record<string, number> = {};
    let count = 0;
    for (let k = 2; k < this.columns; k++) {
      const text = fields[k]!;
      if (text === '') continue;
      const name = this.metrics[k - 2]!;
      setMetric(metrics, name, this.cells.value(text, name, line));
      count++;
    }
    if (count === 0) throw new ImportParseError(line, 'row has no metric values');
    this.readingLine = line;
    return { device, ts, metrics };
  }

  finish(): null {
    return null;
  }
}

/**
 * A finite decimal number (`-1.5`, `.5`, `1e3`) or null. `Number()` does the work (faster
 * than a regex); the checks reject what it takes beyond decimals: "" (→ 0), surrounding
 * whitespace, 0x/0o/0b prefixes, and "Infinity" or 1e999 (not finite).
 */
function parseDecimal(text: string): number | null {
  const value = Number(text);
  if (!Number.isFinite(value) || text === '') return null;
  const first = text.charCodeAt(0);
  const last = text.charCodeAt(text.length - 1);
  if (!((first >= ZERO && first <= NINE) || first === DOT || first === MINUS || first === PLUS)) return null;
  if (!((last >= ZERO && last <= NINE) || last === DOT)) return null;
  if (first === ZERO && text.length > 2) {
    const prefix = text.charCodeAt(1) | 0x20; // lower case
    if (prefix === LOWER_X || prefix === LOWER_O || prefix === LOWER_B) return null;
  }
  return value;
}

/**
 * A copy of `text` that shares no memory with the block it was sliced from. V8 keeps a
 * whole block alive while any slice of it lives, so a caller caching device ids would
 * otherwise pin one 64 KiB block per id (measured: 5000 ids held 315 MiB). Metric names
 * need no copy: as property keys they are internalised. Concatenating and slicing makes
 * V8 flatten into a fresh string; strings under 13 chars are never slices.
 */
function detach(text: string): string {
  return text.length < 13 ? text : ` ${text}`.slice(1);
}

function setMetric(metrics: Record<string, number>, name: string, value: number): void {
  // Plain assignment to "__proto__" would set the prototype instead of a metric.
  if (name === '__proto__') {
    Object.defineProperty(metrics, name, { value, enumerable: true, writable: true, configurable: true });
  } else {
    metrics[name] = value;
  }
}

function quote(text: string): string {
  return clip(JSON.stringify(text));
}

function clip(text: string): string {
  return text.length > DETAIL_VALUE_MAX ? `${text.slice(0, DETAIL_VALUE_MAX - 1)}…` : text;
}
