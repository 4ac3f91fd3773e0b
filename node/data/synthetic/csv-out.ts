/**
 * Writing the synthetic table as RFC 4180 CSV that node/data/csv.ts reads
 * back: a field is quoted when it holds the delimiter, a quote, CR or LF, or
 * leading/trailing space, and quotes inside are doubled. LF line ends.
 */
import type { RawValue } from '../../../coordinator/synthetic/domain.ts'

function field (v: RawValue): string {
  const s = typeof v === 'number' ? String(v) : v
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replaceAll('"', '""')}"` : s
}

export function formatCsv (header: readonly string[], rows: readonly (readonly RawValue[])[]): string {
  const lines = [header.map(field).join(',')]
  for (const row of rows) lines.push(row.map(field).join(','))
  return lines.join('\n') + '\n'
}
