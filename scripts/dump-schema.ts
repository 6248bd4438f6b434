import pg from 'pg';

/**
 * A canonical, diffable description of the schema (tables and their storage options,
 * columns, constraints, indexes, functions, views) from the catalogs: no pg_dump, whose version
 * must match the server's. Daily partitions (readings_YYYYMMDD) are runtime data, not schema.
 */
export async function describeSchema(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const q = async (sql: string) => (await client.query<{ line: string }>(sql)).rows.map((r) => r.line);
    const notPartition = `c.relname !~ '^readings_\\d{8}$'`;
    const sections = [
      ['tables', await q(`select concat_ws(' ', c.relname, case c.relkind when 'p' then 'partitioned by ' || pg_get_partkeydef(c.oid) end,
          'with (' || array_to_string(c.reloptions, ', ') || ')') as line
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p') and ${notPartition} order by 1`)],
      ['columns', await q(`select format('%s.%s %s%s%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
          case when a.attnotnull then ' not null' else '' end,
          coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') ||
          case when a.attidentity <> '' then ' identity' else '' end) as line
        from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where n.nspname = 'public' and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped and ${notPartition}
        order by c.relname, a.attnum`)],
      ['constraints', await q(`select format('%s %s %s', c.relname, con.conname, pg_get_constraintdef(con.oid)) as line
        from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and ${notPartition} order by 1`)],
      ['indexes', await q(`select pg_get_indexdef(i.indexrelid) as line
        from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and ${notPartition} order by 1`)],
      ['functions', await q(`select pg_get_functiondef(p.oid) as line
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public' order by p.proname`)],
      ['views', await q(`select format('%s as%s', c.relname, pg_get_viewdef(c.oid)) as line
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind = 'v' order by 1`)],
    ] as const;
    return sections.map(([name, lines]) => `-- ${name}\n${lines.join('\n')}\n`).join('\n');
  } finally {
    await client.end();
  }
}

// `node --import tsx scripts/dump-schema.ts URL > db/schema.sql`
if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.argv[2] ?? process.env.DATABASE_URL;
  if (!url) throw new Error('usage: dump-schema.ts DATABASE_URL');
  process.stdout.write(await describeSchema(url));
}
