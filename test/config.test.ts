import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError, configTable, loadConfig } from '../src/config.ts';

describe('config', () => {
  it('has defaults for everything', () => {
    const c = loadConfig({});
    assert.equal(c.PORT, 8080);
    assert.equal(c.DATABASE_URL, '');
    assert.equal(c.MIGRATE_ON_START, true);
  });

  it('parses integers and booleans from the environment', () => {
    const c = loadConfig({ PORT: '9000', MIGRATE_ON_START: 'false', LOG_LEVEL: 'debug' });
    assert.equal(c.PORT, 9000);
    assert.equal(c.MIGRATE_ON_START, false);
    assert.equal(c.LOG_LEVEL, 'debug');
  });

  for (const [name, value] of [
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['DB_QUERY_POOL_MAX', '0'],
    ['MIGRATE_ON_START', 'maybe'],
    ['LOG_LEVEL', 'loud'],
  ] as const) {
    it(`rejects ${name}=${value} naming the variable`, () => {
      assert.throws(
        () => loadConfig({ [name]: value }),
        (err: unknown) => err instanceof ConfigError && err.variable === name && err.message.includes(name),
      );
    });
  }

  it('README shows the current configuration table (regenerate: npx pulse config)', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    assert.ok(readme.includes(configTable()), 'README.md configuration table is out of date');
  });

  it('documents every variable', () => {
    const table = configTable();
    for (const name of ['PORT', 'DATABASE_URL', 'MAX_FUTURE_SKEW_S', 'DB_STATEMENT_TIMEOUT_MS']) assert.match(table, new RegExp(`\`${name}\``));
  });
});
