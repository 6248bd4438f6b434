/**
 * The one error the bulk-import parsers throw for bad input. Anything else escaping a
 * parser is a bug or an I/O failure of the source, never a verdict on the data.
 */
export class ImportParseError extends Error {
  override readonly name = 'ImportParseError';
  /** 1-based physical line (for CSV the header is line 1; a record spanning lines reports its first). */
  readonly line: number;
  /** What is wrong, without the line prefix. */
  readonly detail: string;

  constructor(line: number, detail: string) {
    super(`line ${line}: ${detail}`);
    this.line = line;
    this.detail = detail;
  }
}
