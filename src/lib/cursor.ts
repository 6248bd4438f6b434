import { problem } from '../http/errors.ts';

/**
 * Opaque keyset cursors: the sort key of the last row of a page, as base64url JSON.
 * Clients must not build them; a cursor that does not decode to the expected shape is a 400.
 */
export function encodeCursor(key: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeCursor<T extends readonly ('string' | 'number')[]>(
  cursor: string,
  shape: T,
): { [K in keyof T]: T[K] extends 'string' ? string : number } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const ok =
    Array.isArray(parsed) &&
    parsed.length === shape.length &&
    parsed.every((v, i) => (shape[i] === 'number' ? Number.isSafeInteger(v) : typeof v === 'string'));
  if (!ok) throw problem('invalid-cursor', 'The cursor is not one this API returned; start again without it.');
  return parsed as never;
}
