/**
 * What the NDJSON and CSV import parsers share about their input: options, the line
 * limit, and turning a byte stream into text blocks.
 */

import type { ReadingInput } from '../readings/types.ts';

export interface ParseOptions {
  /** Readings per yielded array (the last one may be shorter), e.g. 5000. */
  batchSize: number;
  /** The timestamp of readings that carry none, epoch µs. */
  nowUs: number;
  /**
   * Smallest piece of text parsed at a time, in UTF-16 units (default DEFAULT_BLOCK):
   * smaller source chunks are joined first, which keeps per-chunk work and the CSV
   * rescan of an unfinished record negligible when a source trickles bytes. Tests set 1
   * so that every chunk boundary reaches the parsers.
   */
  blockSize?: number;
  /**
   * The caller's own checks of a complete reading (id rules, time bounds): a message makes
   * the parser throw an ImportParseError naming the line the reading started on.
   */
  check?: (reading: ReadingInput) => string | null;
}

/** Longest accepted line (NDJSON) or record (CSV), in UTF-8 bytes without the line break. */
export const MAX_LINE_BYTES = 1024 * 1024;

export const DEFAULT_BLOCK = 64 * 1024;

export function checkParseOptions(opts: ParseOptions): void {
  if (!Number.isSafeInteger(opts.batchSize) || opts.batchSize < 1) {
    throw new RangeError(`batchSize must be a positive integer, got ${opts.batchSize}`);
  }
  if (!Number.isSafeInteger(opts.nowUs) || opts.nowUs < 0) {
    throw new RangeError(`nowUs must be a non-negative integer (epoch µs), got ${opts.nowUs}`);
  }
  if (opts.blockSize !== undefined && (!Number.isSafeInteger(opts.blockSize) || opts.blockSize < 1)) {
    throw new RangeError(`blockSize must be a positive integer, got ${opts.blockSize}`);
  }
}

/** True if `text` is longer than MAX_LINE_BYTES once encoded as UTF-8. */
export function exceedsLineLimit(text: string): boolean {
  // A UTF-16 unit takes 1 to 3 UTF-8 bytes, so only the middle band needs counting.
  if (text.length > MAX_LINE_BYTES) return true;
  if (text.length * 3 <= MAX_LINE_BYTES) return false;
  return Buffer.byteLength(text, 'utf8') > MAX_LINE_BYTES;
}

/**
 * Thrown by `textBlocks` after it has yielded all text before the offending bytes, so
 * the parser can name the line it is on. Parsers turn it into an ImportParseError.
 */
export class InvalidUtf8Error extends Error {
  constructor(readonly truncated: boolean) {
    super(truncated ? 'input ends inside a UTF-8 sequence' : 'invalid UTF-8');
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Decodes `source` as UTF-8 (strict; a leading BOM is dropped) and yields text in blocks
 * of at least `minBlock` units, then `null` once the source is exhausted. String chunks
 * are taken as already decoded. Only one block is held at a time.
 */
export async function* textBlocks(
  source: AsyncIterable<Buffer | string>,
  minBlock = DEFAULT_BLOCK,
): AsyncGenerator<string | null, void, undefined> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let parts: string[] = [];
  let size = 0;
  let pending: Uint8Array = EMPTY; // bytes of an unfinished character the decoder holds
  let consumed = 0; // bytes decoded so far (pending included)
  let first = true;
  for await (const chunk of source) {
    let text: string;
    if (typeof chunk === 'string') {
      if (pending.length > 0) {
        yield parts.join('');
        throw new InvalidUtf8Error(true);
      }
      text = first && chunk.charCodeAt(0) === 0xfeff ? chunk.slice(1) : chunk;
    } else {
      try {
        text = decoder.decode(chunk, { stream: true });
      } catch {
        // a BOM is leading only at byte 0: after a chunk that was just a BOM, another is text
        parts.push(validPrefix(pending, chunk, consumed === pending.length));
        yield parts.join('');
        throw new InvalidUtf8Error(false);
      }
      pending = unfinishedTail(pending, chunk);
      consumed += chunk.length;
    }
    // "first" lasts until text comes out: a BOM split over chunks is still a leading BOM
    if (text.length === 0) continue;
    first = false;
    parts.push(text);
    size += text.length;
    if (size >= minBlock) {
      yield parts.length === 1 ? text : parts.join('');
      parts = [];
      size = 0;
    }
  }
  if (pending.length > 0) {
    yield parts.join('');
    throw new InvalidUtf8Error(true);
  }
  if (size > 0) yield parts.join('');
  yield null;
}

/** The bytes of the last, unfinished character of the (valid) stream so far. */
function unfinishedTail(previous: Uint8Array, chunk: Uint8Array): Uint8Array {
  // A character has at most 4 bytes, so with 4 or more new bytes `previous` is irrelevant.
  const bytes = chunk.length >= 4 || previous.length === 0 ? chunk : concat(previous, chunk);
  const stop = Math.max(0, bytes.length - 4);
  let i = bytes.length - 1;
  while (i >= stop && (bytes[i]! & 0xc0) === 0x80) i--;
  if (i < stop) return EMPTY;
  const lead = bytes[i]!;
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return bytes.length - i < length ? bytes.slice(i) : EMPTY;
}

/** The text of `pending + chunk` up to the first invalid byte (slow path, runs once). */
function validPrefix(pending: Uint8Array, chunk: Uint8Array, atStart: boolean): string {
  const bytes = concat(pending, chunk);
  const bad = firstInvalidUtf8(bytes);
  return new TextDecoder('utf-8', { ignoreBOM: !atStart }).decode(bytes.subarray(0, Math.max(bad, 0)));
}

/** Index of the first byte that makes `bytes` invalid UTF-8 (WHATWG rules), or -1. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let following: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) following = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      following = 2;
      if (lead === 0xe0) low = 0xa0; // overlong
      if (lead === 0xed) high = 0x9f; // surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      following = 3;
      if (lead === 0xf0) low = 0x90; // overlong
      if (lead === 0xf4) high = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k <= following; k++) {
      if (i + k >= bytes.length) return -1; // unfinished, not (yet) invalid
      const byte = bytes[i + k]!;
      if (byte < low || byte > high) return i;
      low = 0x80;
      high = 0xbf;
    }
    i += following + 1;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
