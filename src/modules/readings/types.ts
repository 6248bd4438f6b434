/**
 * A reading as every ingest path produces it, after parsing and before validation.
 * `ts` is epoch microseconds (an integer): PostgreSQL's timestamptz resolution, and
 * exact in a JS number until the year 2255.
 */
export interface ReadingInput {
  device: string;
  ts: number;
  metrics: Record<string, number>;
}
