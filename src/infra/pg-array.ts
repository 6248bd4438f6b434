/**
 * Array parameters as PostgreSQL array literals, built in one pass. node-postgres does the
 * same per element through its generic value conversion, which profiles showed at ~7 % of
 * a bulk write's CPU (a 5,000-line request sends arrays of thousands of elements: latest
 * values, device names, spans). PostgreSQL reads the same values as from node-postgres's
 * text: numbers as `String(n)` (unquoted), strings always double-quoted with `"` and `\` escaped.
 *
 * Only flat arrays of all numbers or all strings are rewritten; anything else (nulls,
 * nested arrays, Buffers, dates, booleans) is returned unchanged, for node-postgres to convert.
 */
/** The parameters with arrays as literals; the same array when none is an array (most statements). */
export function arrayParams(params: unknown[]): unknown[] {
  for (let i = 0; i < params.length; i++) if (Array.isArray(params[i])) return params.map(arrayParam);
  return params;
}

export function arrayParam(value: unknown): unknown {
  if (!Array.isArray(value)) return value;
  const n = value.length;
  if (n === 0) return '{}';
  const first: unknown = value[0];
  if (typeof first === 'number') {
    for (let i = 1; i < n; i++) if (typeof value[i] !== 'number') return value;
    return `{${value.join(',')}}`;
  }
  if (typeof first === 'string') {
    let out = '{';
    for (let i = 0; i < n; i++) {
      const s: unknown = value[i];
      if (typeof s !== 'string') return value;
      if (i > 0) out += ',';
      out += NEEDS_ESCAPE.test(s) ? `"${s.replace(ESCAPED, '\\$&')}"` : `"${s}"`;
    }
    return `${out}}`;
  }
  return value;
}

const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;
