/**
 * Reading a user's table (CSV or JSONL) against its declared schema, before
 * any encoding: the file is size-checked before it is read, the header must
 * name exactly the declared columns, and every row either fits or is a named
 * error with file:line. With skipBadRows a bad row is skipped and counted
 * instead; nothing is ever half-read silently.
 */
import { readFile, stat } from 'node:fs/promises'
import { extname } from 'node:path'
import { ColumnCountError, DataFileNotFoundError, DataFileTooLargeError, DataInputError, EmptyDataFileError, HeaderError } from '../errors.ts'
import { parseCsv } from './csv.ts'
import { parseJsonl } from './jsonl.ts'
import { parseDatasetSchema, type DatasetSchemaSpec, type RawRecord } from './schema.ts'
import { parseCell } from './values.ts'

export type TableFormat = 'csv' | 'jsonl'

export interface ReadOptions {
  /** Default: from the extension (.csv, .jsonl, .ndjson). */
  format?: TableFormat
  skipBadRows?: boolean
  /** Refuse larger files before reading them. Default 256 MiB. */
  maxBytes?: number
  signal?: AbortSignal
}

/** A structurally sound row: one text cell per schema column, in schema order. */
export interface RawRow {
  line: number
  cells: string[]
}

export interface RawTable {
  file: string
  format: TableFormat
  /** Schema column names, the order of every row's cells. */
  columns: string[]
  rows: RawRow[]
  skipped: number
  /** The first few skipped rows' errors (file:line: why). */
  problems: string[]
  /** Every skipped row's error, by line. */
  errors: DataInputError[]
}

const MAX_PROBLEMS = 20

/**
 * Collects row errors. A file is judged only once all its rows are read, so
 * the error reported (or listed first) is the one on the earliest line,
 * whichever pass found it.
 */
export class BadRows {
  readonly errors: DataInputError[] = []
  add (err: unknown): void {
    if (!(err instanceof DataInputError)) throw err
    this.errors.push(err)
  }

  /** Throws the earliest error unless skipBadRows; otherwise returns the count and the first reasons. */
  settle (skipBadRows: boolean, ...more: readonly DataInputError[][]): { skipped: number, problems: string[], errors: DataInputError[] } {
    const all = [...this.errors, ...more.flat()].sort((a, b) => (a.line ?? 0) - (b.line ?? 0))
    if (!skipBadRows && all[0] !== undefined) throw all[0]
    return { skipped: all.length, problems: all.slice(0, MAX_PROBLEMS).map(e => e.message), errors: all }
  }
}

export function tableFormatOf (file: string): TableFormat {
  const ext = extname(file).toLowerCase()
  if (ext === '.csv') return 'csv'
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl'
  throw new DataInputError(`cannot tell the format from the extension '${ext}'; name the format (csv or jsonl)`, file)
}

async function readText (file: string, maxBytes: number, signal?: AbortSignal): Promise<string> {
  let size: number
  try {
    size = (await stat(file)).size
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DataFileNotFoundError('no such file', file, undefined, { cause: err })
    throw err
  }
  if (size > maxBytes) throw new DataFileTooLargeError(`${size} bytes is above the limit of ${maxBytes}`, file)
  const bytes = await readFile(file, signal === undefined ? {} : { signal })
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch (err) {
    throw new DataInputError('is not valid UTF-8 text', file, undefined, { cause: err })
  }
}

function csvRows (text: string, file: string, columns: string[], bad: BadRows): RawRow[] {
  const records = parseCsv(text, file)
  const header = records[0]
  if (header === undefined) throw new EmptyDataFileError('the file is empty', file)
  const seen = new Set<string>()
  for (const name of header.cells) {
    if (seen.has(name)) throw new HeaderError(`column '${name}' appears twice in the header`, file, header.line)
    seen.add(name)
    if (!columns.includes(name)) throw new HeaderError(`column '${name}' is not declared in the schema: declare it (its kind, and a policy mark) or remove it`, file, header.line)
  }
  for (const name of columns) {
    if (!seen.has(name)) throw new HeaderError(`column '${name}' is declared in the schema but missing from the header`, file, header.line)
  }
  const position = columns.map(name => header.cells.indexOf(name))
  if (records.length === 1) throw new EmptyDataFileError('has a header but no data rows', file)
  const rows: RawRow[] = []
  for (let r = 1; r < records.length; r++) {
    const rec = records[r]!
    if (rec.cells.length !== header.cells.length) {
      bad.add(new ColumnCountError(`expected ${header.cells.length} fields (as the header), got ${rec.cells.length}`, file, rec.line))
      continue
    }
    rows.push({ line: rec.line, cells: position.map(p => rec.cells[p]!) })
  }
  return rows
}

function jsonlRows (text: string, file: string, columns: string[], bad: BadRows): RawRow[] {
  const records = parseJsonl(text, file)
  if (records.length === 0) throw new EmptyDataFileError('the file is empty', file)
  const rows: RawRow[] = []
  for (const rec of records) {
    const extra = [...rec.fields.keys()].filter(k => !columns.includes(k))
    const missing = columns.filter(c => !rec.fields.has(c))
    if (extra.length > 0 || missing.length > 0) {
      const parts = [
        ...(missing.length > 0 ? [`missing field${missing.length > 1 ? 's' : ''} ${missing.map(m => `'${m}'`).join(', ')}`] : []),
        ...(extra.length > 0 ? [`undeclared field${extra.length > 1 ? 's' : ''} ${extra.map(m => `'${m}'`).join(', ')}`] : [])
      ]
      bad.add(new ColumnCountError(`expected the ${columns.length} declared fields: ${parts.join('; ')}`, file, rec.line))
      continue
    }
    rows.push({ line: rec.line, cells: columns.map(c => rec.fields.get(c)!) })
  }
  return rows
}

/** Reads a table's rows as text cells in schema order; no value is interpreted yet. */
export async function readRawTable (file: string, schemaInput: DatasetSchemaSpec, options: ReadOptions = {}): Promise<RawTable> {
  const schema = parseDatasetSchema(schemaInput)
  const format = options.format ?? tableFormatOf(file)
  const text = await readText(file, options.maxBytes ?? 256 * 1024 * 1024, options.signal)
  if (text.trim() === '') throw new EmptyDataFileError('the file is empty', file)
  const columns = schema.columns.map(c => c.name)
  const bad = new BadRows()
  const rows = format === 'csv' ? csvRows(text, file, columns, bad) : jsonlRows(text, file, columns, bad)
  const { skipped, problems, errors } = bad.settle(options.skipBadRows ?? false)
  if (rows.length === 0) throw new EmptyDataFileError(`no usable rows: all ${skipped} rows were bad (first: ${problems[0] ?? 'none'})`, file)
  return { file, format, columns, rows, skipped, problems, errors }
}

export interface RecordsResult {
  records: RawRecord[]
  skipped: number
  problems: string[]
}

/**
 * Every column of every row, validated and typed (numbers as numbers, the
 * rest as given), with line numbers. For consumers of raw rows at the site,
 * such as the synthetic-data generator; nothing here is standardised.
 */
export async function readRecords (file: string, schemaInput: DatasetSchemaSpec, options: ReadOptions = {}): Promise<RecordsResult> {
  const schema = parseDatasetSchema(schemaInput)
  // Structural errors are settled together with value errors, so the earliest line is reported.
  const table = await readRawTable(file, schema, { ...options, skipBadRows: true })
  const bad = new BadRows()
  const records: RawRecord[] = []
  for (const row of table.rows) {
    try {
      const values: RawRecord['values'] = {}
      schema.columns.forEach((spec, k) => { values[spec.name] = parseCell(spec, row.cells[k]!, file, row.line) })
      records.push({ line: row.line, values })
    } catch (err) {
      bad.add(err)
    }
  }
  const { skipped, problems } = bad.settle(options.skipBadRows ?? false, table.errors)
  if (records.length === 0) throw new EmptyDataFileError(`no usable rows: all ${skipped} rows were bad (first: ${problems[0] ?? 'none'})`, file)
  return { records, skipped, problems }
}
