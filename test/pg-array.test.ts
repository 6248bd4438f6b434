import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { arrayParam, arrayParams } from '../src/infra/pg-array.ts';
import { adminUrl } from './helpers/db.ts';

describe('arrayParam: array parameters as PostgreSQL literals', () => {
  let client: pg.Client;
  before(async () => {
    client = new pg.Client({ connectionString: adminUrl() });
    await client.connect();
  });
  after(() => client.end());

  /** What PostgreSQL reads from the literal, next to what it reads from node-postgres's own conversion. */
  const both = async (cast: string, value: unknown[]) => {
    const ours = await client.query({ text: `select $1::${cast} as v`, values: [arrayParam(value)] });
    const theirs = await client.query({ text: `select $1::${cast} as v`, values: [value] });
    return { ours: ours.rows[0].v as unknown[], theirs: theirs.rows[0].v as unknown[] };
  };

  it('numbers: bigints and floats arrive exactly', async () => {
    const ints = [1, 0, -5, 9_007_199_254_740_991, 1_764_000_000_000_123];
    const i = await both('int8[]', ints);
    assert.deepEqual(i.ours, ints.map(String)); // int8 comes back as text
    assert.deepEqual(i.ours, i.theirs);
    const floats = [0.1, 1e-300, 5e-324, 1.7976931348623157e308, -1.5e10, 123.456, 2 / 3, -0];
    const f = await both('float8[]', floats);
    assert.deepEqual(f.ours, [...floats.slice(0, -1), 0]); // -0 is sent as 0, as node-postgres sends it
    assert.deepEqual(f.ours, f.theirs);
  });

  it('strings: quotes, backslashes, braces, commas, blanks, NULL and non-ASCII stay what they were', async () => {
    const texts = ['a', '', 'NULL', 'null', 'with space', ' lead', 'quote"in', 'back\\slash', '\\"both', '{brace}', 'comma,sep', 'ünï €', 'tab\there'];
    const t = await both('text[]', texts);
    assert.deepEqual(t.ours, texts);
    assert.deepEqual(t.ours, t.theirs);
  });

  it('an empty array is {}; arrays it does not handle are passed on unchanged', async () => {
    assert.equal(arrayParam([]), '{}');
    assert.deepEqual((await both('int8[]', [])).ours, []);
    for (const v of [[1, null], [null, 1], ['a', 2], [[1, 2]], [true], [Buffer.from('x')], [new Date(0)]]) assert.equal(arrayParam(v), v);
    assert.equal(arrayParam(5), 5);
    assert.equal(arrayParam('{1}'), '{1}');
  });

  it('a parameter list without arrays is passed as it is; one with arrays gets their literals', () => {
    const plain = [1, 'a', null, new Date(0)];
    assert.equal(arrayParams(plain), plain);
    assert.deepEqual(arrayParams([1, [1, 2], ['a"b']]), [1, '{1,2}', '{"a\\"b"}']);
  });
});
