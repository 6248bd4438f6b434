import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describeSchema } from '../scripts/dump-schema.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';

describe('schema', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(() => db.drop());

  it('db/schema.sql matches the migrated database (regenerate: npm run schema:dump)', async () => {
    const expected = await readFile(new URL('../db/schema.sql', import.meta.url), 'utf8');
    assert.equal(await describeSchema(db.url), expected);
  });
});
