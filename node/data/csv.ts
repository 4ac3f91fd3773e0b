/**
 * RFC 4180 CSV, strictly: fields may be quoted, a quote inside a quoted field
 * is doubled, quoted fields may span lines, records end with CRLF or LF. A
 * stray quote is a syntax error rather than a guess, because a guess silently
 * shifts every following column. Blank lines are skipped.
 */
import { CsvSyntaxError } from '../errors.ts'

export interface CsvRecord {
  /** 1-based line on which the record starts. */
  line: number
  cells: string[]
}

const QUOTE = 0x22
const CR = 0x0d
const LF = 0x0a

/** Splits CSV text into records (the header is the first one). Errors name file:line. */
export function parseCsv (text: string, file: string, delimiter = ','): CsvRecord[] {
  if (delimiter.length !== 1 || delimiter === '"' || delimiter === '\n' || delimiter === '\r') throw new CsvSyntaxError(`unusable delimiter ${JSON.stringify(delimiter)}`, file)
  const delim = delimiter.charCodeAt(0)
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  const out: CsvRecord[] = []
  let line = 1
  let i = 0
  const n = src.length

  while (i < n) {
    const startLine = line
    const cells: string[] = []
    let endOfRecord = false
    while (!endOfRecord) {
      let cell = ''
      if (i < n && src.charCodeAt(i) === QUOTE) {
        const openLine = line
        i++
        let closed = false
        let chunkStart = i
        while (i < n) {
          const c = src.charCodeAt(i)
          if (c === QUOTE) {
            cell += src.slice(chunkStart, i)
            if (src.charCodeAt(i + 1) === QUOTE) {
              cell += '"'
              i += 2
              chunkStart = i
              continue
            }
            i++
            closed = true
            break
          }
          if (c === LF) line++
          i++
        }
        if (!closed) throw new CsvSyntaxError(`unterminated quoted field (opened on line ${openLine})`, file, openLine)
        const after = i < n ? src.charCodeAt(i) : -1
        if (after !== -1 && after !== delim && after !== CR && after !== LF) throw new CsvSyntaxError(`unexpected ${JSON.stringify(src[i])} after a closing quote`, file, line)
      } else {
        const start = i
        while (i < n) {
          const c = src.charCodeAt(i)
          if (c === delim || c === CR || c === LF) break
          if (c === QUOTE) throw new CsvSyntaxError('a quote inside an unquoted field (quote the whole field and double the quote)', file, line)
          i++
        }
        cell = src.slice(start, i)
      }
      cells.push(cell)
      const c = i < n ? src.charCodeAt(i) : -1
      if (c === delim) {
        i++
        continue
      }
      // End of record: CRLF, LF, a lone CR, or the end of the text.
      if (c === CR) {
        i++
        if (src.charCodeAt(i) === LF) i++
        line++
      } else if (c === LF) {
        i++
        line++
      }
      endOfRecord = true
    }
    if (cells.length === 1 && cells[0] === '') continue
    out.push({ line: startLine, cells })
  }
  return out
}
