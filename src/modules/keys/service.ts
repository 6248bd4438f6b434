import { createHash, randomBytes } from 'node:crypto';
import type { Db } from '../../infra/db.ts';
import { insertKey, upsertTenant, type Scope } from './repository.ts';

export const SCOPES: readonly Scope[] = ['read', 'write', 'admin'];
const KEY_PREFIX = 'pulse_';

export const hashKey = (key: string): Buffer => createHash('sha256').update(key).digest();

/** A new key: 192 random bits, base64url, shown once; only its hash is stored. */
export async function createKey(
  db: Db,
  tenant: string,
  scopes: Scope[],
  name: string | null = null,
): Promise<{ id: number; key: string; prefix: string }> {
  const key = KEY_PREFIX + randomBytes(24).toString('base64url');
  const prefix = key.slice(0, KEY_PREFIX.length + 6);
  const id = await db.tx(async (tx) => insertKey(tx, await upsertTenant(tx, tenant), prefix, hashKey(key), scopes, name));
  return { id, key, prefix };
}

export function parseScopes(list: string): Scope[] {
  const scopes = [...new Set(list.split(',').map((s) => s.trim()).filter(Boolean))];
  const bad = scopes.filter((s) => !SCOPES.includes(s as Scope));
  if (bad.length || !scopes.length) throw new Error(`scopes must be a comma-separated subset of ${SCOPES.join(',')}`);
  return scopes as Scope[];
}
