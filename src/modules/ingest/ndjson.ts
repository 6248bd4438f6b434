/**
 * Streaming NDJSON import: one `{"device", "ts"?, "metrics"}` object per line, LF or
 * CRLF; blank lines are skipped. `ts` is whatever parseTimestamp takes (an RFC 3339
 * string, epoch ms as a number or a digit string); absent means `opts.nowUs`, while
 * null is an error. Other keys are errors too, so that a misspelt "ts" is not silently
 * replaced by "now".
 *
 * Memory is one text block, one batch and one partial line (at most MAX_LINE_BYTES),
 * whatever the input size. The first bad line throws an ImportParseError; batches
 * yielded before it are not taken back (and the batch in progress is dropped), so the
 * caller imports inside a transaction.
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

const LINE_FEED = '\n';
const OPEN_BRACE = 123;
const DETAIL_VALUE_MAX = 80;

export async function* parseNdjson(
  source: AsyncIterable<Buffer | string>,
  opts: ParseOptions,
): AsyncGenerator<ReadingInput[], void, undefined> {
  checkParseOptions(opts);
  const { batchSize, nowUs } = opts;
  let batch: ReadingInput[] = [];
  let line = 1; // the line that the next '\n' ends
  let carry: string[] = []; // the current line's text from earlier blocks
  let carryLength = 0;
  try {
    for await (const block of textBlocks(source, opts.blockSize)) {
      if (block === null) {
        if (carryLength > 0) {
          const reading = parseLine(carry.join(''), line, nowUs);
          if (reading !== null) batch.push(checked(reading, line, opts));
        }
        break;
      }
      let start = 0;
      let end = block.indexOf(LINE_FEED);
      if (end === -1) {
        carry.push(block);
        carryLength += block.length;
        if (carryLength > MAX_LINE_BYTES) throw tooLong(line);
        continue;
      }
      while (end !== -1) {
        let text = block.slice(start, end);
        if (carryLength > 0) {
          carry.push(text);
          text = carry.join('');
          carry = [];
          carryLength = 0;
        }
        const reading = parseLine(text, line, nowUs);
        line++;
        start = end + 1;
        end = block.indexOf(LINE_FEED, start);
        if (reading === null) continue;
        batch.push(checked(reading, line - 1, opts));
        if (batch.length === batchSize) {
          yield batch;
          batch = [];
        }
      }
      if (start < block.length) {
        carry.push(block.slice(start));
        carryLength = block.length - start;
        if (carryLength > MAX_LINE_BYTES) throw tooLong(line);
      }
    }
  } catch (error) {
    if (error instanceof InvalidUtf8Error) throw new ImportParseError(line, error.message);
    throw error;
  }
  if (batch.length > 0) yield batch;
}

function checked(reading: ReadingInput, line: number, opts: ParseOptions): ReadingInput {
  const detail = opts.check?.(reading);
  if (detail) throw new ImportParseError(line, detail);
  return reading;
}

/** The reading on one line, or null for a blank line. */
function parseLine(text: string, line: number, nowUs: number): ReadingInput | null {
  if (text.charCodeAt(0) !== OPEN_BRACE && text.trim() === '') return null;
  if (exceedsLineLimit(text)) throw tooLong(line);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ImportParseError(line, `invalid JSON: ${clip((error as Error).message, 200)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ImportParseError(line, `expected a JSON object, got ${describe(value)}`);
  }
  const record = value as Record<string, unknown>;
  for (const key in record) {
    if (key !== 'device' && key !== 'ts' && key !== 'metrics') {
      throw new ImportParseError(line, `unexpected key ${quote(key)} (allowed: "device", "ts", "metrics")`);
    }
  }

  const device = record.device;
  if (typeof device !== 'string') {
    throw new ImportParseError(
      line,
      device === undefined ? 'missing "device"' : `"device" must be a string, got ${describe(device)}`,
    );
  }

  let ts = nowUs;
  const rawTs = record.ts;
  if (rawTs !== undefined) {
    const parsed = typeof rawTs === 'string' || typeof rawTs === 'number' ? parseTimestamp(rawTs) : null;
    if (parsed === null) {
      throw new ImportParseError(
        line,
        `"ts" must be an RFC 3339 string or epoch milliseconds (1970–2255), got ${describe(rawTs)}`,
      );
    }
    ts = parsed;
  }

  const metrics = record.metrics;
  if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) {
    throw new ImportParseError(
      line,
      metrics === undefined
        ? 'missing "metrics"'
        : `"metrics" must be an object of numbers, got ${describe(metrics)}`,
    );
  }
  let count = 0;
  for (const name in metrics) {
    const metric = (metrics as Record<string, unknown>)[name];
    // JSON has no NaN or Infinity, but 1e999 parses as Infinity.
    if (typeof metric !== 'number' || !Number.isFinite(metric)) {
      throw new ImportParseError(line, `metric ${quote(name)} must be a finite number, got ${describe(metric)}`);
    }
    count++;
  }
  if (count === 0) throw new ImportParseError(line, '"metrics" is empty');

  // JSON.parse made `metrics` with own data properties only (even "__proto__"), so it is kept as is.
  return { device, ts, metrics: metrics as Record<string, number> };
}

function tooLong(line: number): ImportParseError {
  return new ImportParseError(line, `line longer than ${MAX_LINE_BYTES} bytes`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return clip(JSON.stringify(value), DETAIL_VALUE_MAX);
}

function quote(name: string): string {
  return clip(JSON.stringify(name), DETAIL_VALUE_MAX);
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
