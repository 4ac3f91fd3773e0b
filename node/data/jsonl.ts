/**
 * JSON Lines: one JSON object per line, blank lines skipped. Each line is
 * parsed on its own so an error names its line; numbers become their
 * shortest round-trip text, so a JSONL table reads exactly like a CSV one.
 */
import { BadValueError, JsonlSyntaxError } from '../errors.ts'

export interface JsonlRecord {
  /** 1-based line number. */
  line: number
  /** Field name -> the value as text ('' for null). */
  fields: Map<string, string>
}

function cellText (value: unknown, key: string, file: string, line: number): string {
  if (value === null) return ''
  if (typeof value === 'string') return value
  if (typeof value === 'number') return String(value)
  throw new BadValueError(`field '${key}' holds ${Array.isArray(value) ? 'an array' : typeof value}; expected a number, a string or null`, file, line)
}

/** Parses JSONL text into records of text fields. Errors name file:line. */
export function parseJsonl (text: string, file: string): JsonlRecord[] {
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  const lines = src.split('\n')
  const out: JsonlRecord[] = []
  for (let k = 0; k < lines.length; k++) {
    const raw = lines[k]!.endsWith('\r') ? lines[k]!.slice(0, -1) : lines[k]!
    if (raw.trim() === '') continue
    const line = k + 1
    let value: unknown
    try {
      value = JSON.parse(raw)
    } catch (err) {
      throw new JsonlSyntaxError(`not valid JSON (${(err as Error).message})`, file, line, { cause: err })
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new JsonlSyntaxError('each line must be one JSON object', file, line)
    const fields = new Map<string, string>()
    for (const [key, v] of Object.entries(value)) fields.set(key, cellText(v, key, file, line))
    out.push({ line, fields })
  }
  return out
}
