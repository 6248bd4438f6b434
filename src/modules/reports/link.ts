import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The download link of a "report ready" e-mail: a capability token that stands in for an
 * API key on that one report's download, because people click links in e-mails and do not
 * paste keys. Only the token's SHA-256 is stored (reports.download_token_hash).
 */

/** Lets secret scanners recognise a leaked link token. */
const TOKEN_PREFIX = 'rdl_';
/** The query parameter that carries the token (and that the auth plugin lets through). */
export const TOKEN_PARAM = 'token';

export const hashToken = (token: string): Buffer => createHash('sha256').update(token).digest();

/** A new token (256 random bits, base64url) and the hash to store. */
export function newDownloadToken(): { token: string; hash: Buffer } {
  const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { token, hash: hashToken(token) };
}

/** Whether `token` is the one whose hash is `stored`, in time independent of where they differ. */
export function tokenMatches(token: string, stored: Buffer | null): boolean {
  const hash = hashToken(token);
  return stored !== null && stored.length === hash.length && timingSafeEqual(hash, stored);
}

export function downloadLink(publicUrl: string, reportId: string, token: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/v1/reports/${reportId}/download?${TOKEN_PARAM}=${encodeURIComponent(token)}`;
}
