/**
 * Reading timestamps as every ingest path accepts them, converted to epoch microseconds.
 *
 * Accepted:
 *  - RFC 3339 date-times: `2026-11-23T10:00:00Z`, `…+02:00`, `…-00:00` (= UTC), `t` or a
 *    space instead of `T` (RFC 3339 §5.6 allows both), up to 9 fractional digits
 *    (truncated, not rounded, to µs), second 60 (a leap second; POSIX time has none, so
 *    it lands on the next second).
 *  - Epoch milliseconds: a number, or a string of digits, with at most 3 fractional
 *    digits (the µs part). Exponent forms and signs are not accepted in strings.
 *
 * The result must lie in [1970-01-01T00:00:00Z, 2255-06-05T23:47:34.740991Z]: µs since
 * the epoch as a non-negative safe integer, the range in which `ReadingInput.ts` is exact.
 */

import { problem } from '../../http/errors.ts';

const EPOCH_MS = /^(\d{1,16})(?:\.(\d{1,3}))?$/;
const ZERO = 48;
const PLUS = 43;
const MINUS = 45;
const DOT = 46;
const COLON = 58;
const SPACE = 32;
const UPPER_T = 84;
const LOWER_T = 116;
const UPPER_Z = 90;
const LOWER_Z = 122;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Epoch µs, or null if `value` is not an accepted timestamp (the caller reports it). */
export function parseTimestamp(value: string | number): number | null {
  if (typeof value === 'number') return fromEpochMsNumber(value);
  if (typeof value !== 'string') return null; // JSON callers may pass anything
  // `YYYY-` is the only way an accepted string can have a '-' at index 4.
  return value.charCodeAt(4) === MINUS ? fromRfc3339(value) : fromEpochMsString(value);
}

function inRange(us: number): number | null {
  return us >= 0 && Number.isSafeInteger(us) ? us : null;
}

/** Below this, doubles are less than 1 µs apart: distinct µs are distinct doubles (year 2248). */
const MS_RESOLVES_US = 2 ** 43;

function fromEpochMsNumber(ms: number): number | null {
  if (!Number.isFinite(ms) || ms < 0) return null;
  if (Number.isInteger(ms)) return inRange(ms * 1000);
  // the sender's decimal had at most 3 fractional digits exactly when the µs it rounds to
  // gives back this double (the shortest decimal of the double is then that one)
  if (ms < MS_RESOLVES_US) {
    const us = Math.round(ms * 1000);
    if (us / 1000 === ms) return us;
  }
  // `ms * 1000` can be off by a µs once the double's spacing nears 1 µs, so go through
  // the shortest decimal that round-trips (what the sender most likely wrote). If that
  // needs more than 3 fractional digits, the sender wrote more than µs precision.
  return fromEpochMsString(String(ms));
}

function fromEpochMsString(text: string): number | null {
  const m = EPOCH_MS.exec(text);
  if (m === null) return null;
  const frac = m[2] === undefined ? 0 : Number(m[2].padEnd(3, '0'));
  return inRange(Number(m[1]) * 1000 + frac);
}

/**
 * Hand-written rather than a regex with captures: this runs once per imported row, and
 * reading char codes in place is several times faster.
 */
function fromRfc3339(text: string): number | null {
  const length = text.length;
  if (length < 20) return null;
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 2);
  const day = digits(text, 8, 2);
  const hour = digits(text, 11, 2);
  const minute = digits(text, 14, 2);
  const second = digits(text, 17, 2);
  const separator = text.charCodeAt(10);
  if (
    (year | month | day | hour | minute | second) < 0 ||
    text.charCodeAt(7) !== MINUS ||
    (separator !== UPPER_T && separator !== LOWER_T && separator !== SPACE) ||
    text.charCodeAt(13) !== COLON ||
    text.charCodeAt(16) !== COLON
  ) {
    return null; // index 4 was checked by the caller
  }
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 60) return null;

  let i = 19;
  let micros = 0;
  if (text.charCodeAt(i) === DOT) {
    const start = ++i;
    while (i < length && isDigit(text.charCodeAt(i))) i++;
    const count = i - start;
    if (count === 0 || count > 9) return null;
    micros = digits(text, start, Math.min(count, 6)) * 10 ** Math.max(0, 6 - count);
  }

  let offsetMinutes: number;
  const zone = text.charCodeAt(i);
  if (zone === UPPER_Z || zone === LOWER_Z) {
    if (i + 1 !== length) return null;
    offsetMinutes = 0;
  } else if (zone === PLUS || zone === MINUS) {
    const offsetHour = digits(text, i + 1, 2);
    const offsetMinute = digits(text, i + 4, 2);
    if (i + 6 !== length || text.charCodeAt(i + 3) !== COLON || offsetHour < 0 || offsetMinute < 0) return null;
    if (offsetHour > 23 || offsetMinute > 59) return null;
    offsetMinutes = (zone === MINUS ? -1 : 1) * (offsetHour * 60 + offsetMinute);
  } else {
    return null;
  }
  const seconds =
    daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60;
  return inRange(seconds * 1_000_000 + micros);
}

/** The number written by `count` ASCII digits at `start`, or -1 if any is not a digit. */
function digits(text: string, start: number, count: number): number {
  let value = 0;
  for (let i = start; i < start + count; i++) {
    const code = text.charCodeAt(i);
    if (!isDigit(code)) return -1;
    value = value * 10 + (code - ZERO);
  }
  return value;
}

function isDigit(code: number): boolean {
  return code >= ZERO && code <= ZERO + 9;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)) return 29;
  return DAYS_IN_MONTH[month - 1]!;
}

/** Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

/** A timestamp parameter of a request (`name`: its field), in epoch µs; a 400 problem naming it when it is not one. */
export function timestampParam(name: string, value: string | number): number {
  const us = parseTimestamp(value);
  if (us === null) throw problem('validation', `\`${name}\` must be an RFC 3339 timestamp or epoch milliseconds.`);
  return us;
}
