/**
 * The finite domain the generator works on. Numeric columns are cut into
 * equal-width bins between bounds that come from the schema, never from the
 * data: bounds or quantiles read off the rows would themselves leak, and
 * would have to be paid for. Categorical columns map to their declared
 * categories. Rows are held column-major as integer codes.
 */
import type { Random } from '../components.ts'
import { SyntheticDomainError } from '../errors.ts'

export type SynthColumn =
  | { name: string, kind: 'numeric', min: number, max: number, bins: number, integer: boolean }
  | { name: string, kind: 'categorical', categories: string[] }

export type RawValue = number | string

export interface Domain {
  readonly columns: readonly SynthColumn[]
  /** Number of codes per column. */
  readonly sizes: readonly number[]
}

/** n rows as integer codes, one array per column. */
export interface Encoded {
  n: number
  codes: Int32Array[]
}

// More codes than this per column only spreads a DP budget over empty cells.
const MAX_CODES = 1024

export function createDomain (columns: readonly SynthColumn[]): Domain {
  if (columns.length === 0) throw new SyntheticDomainError('the synthetic domain needs at least one column')
  const names = new Set<string>()
  const sizes = columns.map(c => {
    if (names.has(c.name)) throw new SyntheticDomainError(`column '${c.name}' appears twice`)
    names.add(c.name)
    if (c.kind === 'numeric') {
      if (!Number.isFinite(c.min) || !Number.isFinite(c.max) || !(c.min < c.max)) {
        throw new SyntheticDomainError(`column '${c.name}': numeric bounds must be finite with min < max, got [${c.min}, ${c.max}]`)
      }
      if (!Number.isInteger(c.bins) || c.bins < 1 || c.bins > MAX_CODES) {
        throw new SyntheticDomainError(`column '${c.name}': bins must be an integer in 1..${MAX_CODES}, got ${c.bins}`)
      }
      return c.bins
    }
    if (c.categories.length === 0 || c.categories.length > MAX_CODES) {
      throw new SyntheticDomainError(`column '${c.name}': needs 1..${MAX_CODES} categories, got ${c.categories.length}`)
    }
    if (new Set(c.categories).size !== c.categories.length) throw new SyntheticDomainError(`column '${c.name}': categories are not unique`)
    return c.categories.length
  })
  return { columns, sizes }
}

/** The bin of a numeric value; values outside the schema bounds fall into the edge bins. */
export function binOf (c: Extract<SynthColumn, { kind: 'numeric' }>, value: number): number {
  const b = Math.floor((value - c.min) / (c.max - c.min) * c.bins)
  return Math.min(c.bins - 1, Math.max(0, b))
}

/** Rows of raw values (in domain column order) to codes. */
export function encodeRows (domain: Domain, rows: readonly (readonly RawValue[])[]): Encoded {
  const d = domain.columns.length
  const codes = domain.columns.map(() => new Int32Array(rows.length))
  const lookups = domain.columns.map(c => c.kind === 'categorical' ? new Map(c.categories.map((v, i) => [v, i])) : undefined)
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!
    if (row.length !== d) throw new SyntheticDomainError(`row ${r}: expected ${d} values, got ${row.length}`)
    for (let j = 0; j < d; j++) {
      const c = domain.columns[j]!
      const v = row[j]!
      if (c.kind === 'numeric') {
        if (typeof v !== 'number' || !Number.isFinite(v)) throw new SyntheticDomainError(`row ${r}, column '${c.name}': expected a finite number, got ${JSON.stringify(v)}`)
        codes[j]![r] = binOf(c, v)
      } else {
        const code = lookups[j]!.get(String(v))
        if (code === undefined) throw new SyntheticDomainError(`row ${r}, column '${c.name}': '${String(v)}' is not one of its categories`)
        codes[j]![r] = code
      }
    }
  }
  return { n: rows.length, codes }
}

/**
 * Codes back to raw values: a numeric code becomes a value drawn uniformly
 * from the grid points inside its bin: integers for an integer column, else
 * multiples of 10^-decimals, so the written file stays readable and every
 * value re-encodes to the bin it came from.
 */
export function decodeRows (domain: Domain, data: Encoded, random: Random, decimals = 3): RawValue[][] {
  const rows: RawValue[][] = []
  for (let r = 0; r < data.n; r++) {
    const row: RawValue[] = []
    for (let j = 0; j < domain.columns.length; j++) {
      const c = domain.columns[j]!
      const code = data.codes[j]![r]!
      row.push(c.kind === 'categorical' ? c.categories[code]! : drawInBin(c, code, c.integer ? 1 : 10 ** decimals, random))
    }
    rows.push(row)
  }
  return rows
}

function drawInBin (c: Extract<SynthColumn, { kind: 'numeric' }>, code: number, perUnit: number, random: Random): number {
  const width = (c.max - c.min) / c.bins
  const lo = c.min + code * width
  const last = code === c.bins - 1
  const hi = last ? c.max : lo + width
  // Grid points k / perUnit in [lo, hi), and max itself in the last bin.
  const kLo = Math.ceil(lo * perUnit - 1e-9)
  const kHi = last ? Math.floor(hi * perUnit + 1e-9) : Math.ceil(hi * perUnit - 1e-9) - 1
  if (kHi < kLo) return lo + random.next() * (hi - lo) // a bin narrower than the grid
  return (kLo + random.int(kHi - kLo + 1)) / perUnit
}
