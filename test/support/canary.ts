/**
 * Canaries for the leak test: records with unique values planted at a site,
 * and a search for them in whatever left the site (stream bytes captured
 * before encryption, other sites' stores, logs).
 *
 * A canary is searched as
 *   - its raw values as text, in UTF-8 and UTF-16LE;
 *   - the float32 little-endian encoding of its whole feature vector, at any
 *     byte offset, and in base64 at each of the three alignments;
 *   - windows of `window` consecutive values of that vector (a leak of part
 *     of a record), when the whole vector is not found in that haystack;
 *   - the float32 encoding of each distinctive single value. Four bytes can
 *     match by chance: the expected number of chance hits is about
 *     (haystack bytes) x (values) / 2^32, so single-value hits are reported
 *     under their own encoding for the caller to judge.
 */
import { createSeededRandom } from '../../coordinator/components.ts'
import type { LoadedTable } from '../../node/data/load.ts'
import type { DatasetSchemaSpec } from '../../node/data/schema.ts'
import type { LabeledData } from '../../node/data/types.ts'

export interface Canary {
  /** Unique token, e.g. CANARY-site-a-0-9f3c1e2d7a4b. */
  id: string
  site: string
  /** Raw values searched as text: the id and every unique token or number of the record. */
  texts: string[]
  /** Distinctive single numbers of the record, searched as float32. */
  values: number[]
  /** The record's feature vector as the trainer sees it. */
  features?: Float32Array
  label?: number
  /** Where it was planted: a row of LabeledData, or a line of a table file. */
  row?: number
  line?: number
}

export type Encoding = 'utf8' | 'utf16le' | 'text' | 'float32-record' | 'float32-record-base64' | 'float32-window' | 'float32-value'

export interface Occurrence {
  canary: string
  /** Index of the haystack in the array, or its key. */
  haystack: number | string
  offset: number
  encoding: Encoding
}

export type Haystacks = ReadonlyArray<Uint8Array | string> | Readonly<Record<string, Uint8Array | string>>

function hex (rng: { int: (n: number) => number }, chars: number): string {
  let s = ''
  for (let i = 0; i < chars; i++) s += rng.int(16).toString(16)
  return s
}

/**
 * Image-like canaries: every value a distinct off-grid number in (0, 1) (never
 * k/255), so no window of the vector occurs in real MNIST data or in zeros.
 */
export function makeVectorCanaries (count: number, dim: number, site: string, seed: number | string, numClasses = 10): Canary[] {
  const rng = createSeededRandom(seed).fork(`canary/${site}`)
  return Array.from({ length: count }, (_, k) => {
    const id = `CANARY-${site}-${k}-${hex(rng, 12)}`
    const features = new Float32Array(dim)
    for (let i = 0; i < dim; i++) features[i] = 0.05 + 0.9 * rng.next() + 1e-7 * rng.next()
    return { id, site, texts: [id], values: [], features, label: rng.int(numClasses) }
  })
}

/** A copy of `data` with canaries written over rows chosen by the seed; sets each canary's row. */
export function plantCanaries (data: LabeledData, canaries: Canary[], seed: number | string): LabeledData {
  const rng = createSeededRandom(seed).fork('plant')
  const x = data.x.slice()
  const y = data.y.slice()
  const taken = new Set<number>()
  for (const c of canaries) {
    if (c.features === undefined || c.features.length !== data.dim) throw new RangeError(`canary ${c.id} has no ${data.dim}-value feature vector`)
    if (taken.size >= data.n) throw new RangeError('more canaries than rows')
    let row = rng.int(data.n)
    while (taken.has(row)) row = rng.int(data.n)
    taken.add(row)
    x.set(c.features, row * data.dim)
    y[row] = (c.label ?? 0) % data.numClasses
    c.row = row
  }
  return { ...data, x, y }
}

function csvCell (s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

/**
 * Appends `count` canary records to a table's text (CSV with its header, or
 * JSONL). Text and id columns get unique tokens, non-integer numeric columns
 * distinctive numbers inside their bounds, categorical and label columns a
 * declared category, the site column `site`. Sets each canary's line.
 * The encoded vector is only distinctive when at least one trained column is
 * a non-integer numeric; integers and categories can repeat real rows.
 */
export function plantTableCanaries (text: string, format: 'csv' | 'jsonl', schema: DatasetSchemaSpec, opts: { count: number, site: string, seed: number | string }): { text: string, canaries: Canary[] } {
  const rng = createSeededRandom(opts.seed).fork(`table-canary/${opts.site}`)
  let out = text.endsWith('\n') || text === '' ? text : text + '\n'
  const header = format === 'csv' ? out.split(/\r?\n/, 1)[0]!.split(',') : schema.columns.map(c => c.name)
  let line = out.split('\n').length
  const canaries: Canary[] = []
  for (let k = 0; k < opts.count; k++) {
    const id = `CANARY-${opts.site}-${k}-${hex(rng, 12)}`
    const canary: Canary = { id, site: opts.site, texts: [id], values: [], line }
    const record: Record<string, string | number> = {}
    for (const col of schema.columns) {
      if (col.kind === 'text' || col.kind === 'id') {
        record[col.name] = `${id}-${col.name}`
        canary.texts.push(record[col.name] as string)
      } else if (col.kind === 'site') {
        record[col.name] = opts.site
      } else if (col.kind === 'categorical' || col.kind === 'label') {
        record[col.name] = col.categories![rng.int(col.categories!.length)]!
      } else {
        const lo = col.bounds?.min ?? 0
        const hi = col.bounds?.max ?? 1e6
        if (col.integer === true) {
          record[col.name] = Math.ceil(lo) + rng.int(Math.max(1, Math.floor(hi) - Math.ceil(lo) + 1))
        } else {
          // Four decimals off any round number: distinctive as text and as float32.
          const v = Number((lo + (hi - lo) * (0.1 + 0.8 * rng.next())).toFixed(4)) + 0.0001 * (1 + rng.int(9))
          record[col.name] = Number(v.toFixed(4))
          canary.values.push(record[col.name] as number)
          canary.texts.push(String(record[col.name]))
        }
      }
    }
    out += format === 'csv'
      ? header.map(h => csvCell(String(record[h] ?? ''))).join(',') + '\n'
      : JSON.stringify(record) + '\n'
    line++
    canaries.push(canary)
  }
  return { text: out, canaries }
}

/** Sets each table canary's feature vector from the loaded table (matched by line). */
export function attachFeatures (canaries: Canary[], table: LoadedTable): void {
  for (const c of canaries) {
    const i = table.lines.indexOf(c.line ?? -1)
    if (i < 0) throw new RangeError(`canary ${c.id} (line ${String(c.line)}) is not among the loaded rows`)
    c.features = table.data.x.slice(i * table.data.dim, (i + 1) * table.data.dim)
    c.row = i
  }
}

function float32le (values: ArrayLike<number>): Buffer {
  const b = Buffer.alloc(values.length * 4)
  for (let i = 0; i < values.length; i++) b.writeFloatLE(values[i]!, i * 4)
  return b
}

/** base64 of the record's bytes from each of the three alignments, without the padded tail. */
function base64Needles (bytes: Buffer): string[] {
  const out: string[] = []
  for (let k = 0; k < 3; k++) {
    const len = Math.floor((bytes.length - k) / 3) * 3
    if (len >= 24) out.push(bytes.subarray(k, k + len).toString('base64'))
  }
  return out
}

function allIndexes (hay: Buffer | string, needle: Buffer | string): number[] {
  const found: number[] = []
  if (needle.length === 0) return found
  let at = (hay as Buffer).indexOf(needle as Buffer)
  while (at !== -1) {
    found.push(at)
    at = (hay as Buffer).indexOf(needle as Buffer, at + 1)
  }
  return found
}

export interface FindOptions {
  /** Values per partial-record window. Default 8 (32 bytes). */
  window?: number
  /** Search distinctive single values as float32. Default true. */
  values?: boolean
}

/** Every place any canary occurs in any haystack. An empty result is the leak test's pass. */
export function findCanaries (haystacks: Haystacks, canaries: readonly Canary[], options: FindOptions = {}): Occurrence[] {
  const window = options.window ?? 8
  const entries: Array<[number | string, Uint8Array | string]> = Array.isArray(haystacks)
    ? (haystacks as ReadonlyArray<Uint8Array | string>).map((h, i) => [i, h])
    : Object.entries(haystacks)
  const found: Occurrence[] = []
  for (const [key, hay] of entries) {
    const isText = typeof hay === 'string'
    const bytes = isText ? undefined : Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength)
    const search = (canary: string, needle: Buffer | string, encoding: Encoding): number => {
      const hits = isText
        ? (typeof needle === 'string' ? allIndexes(hay, needle) : [])
        : allIndexes(bytes!, typeof needle === 'string' ? Buffer.from(needle, 'latin1') : needle)
      for (const offset of hits) found.push({ canary, haystack: key, offset, encoding })
      return hits.length
    }
    for (const c of canaries) {
      for (const t of c.texts) {
        if (isText) search(c.id, t, 'text')
        else {
          search(c.id, Buffer.from(t, 'utf8'), 'utf8')
          search(c.id, Buffer.from(t, 'utf16le'), 'utf16le')
        }
      }
      if (c.features !== undefined && c.features.length > 0) {
        const record = float32le(c.features)
        let whole = isText ? 0 : search(c.id, record, 'float32-record')
        for (const b64 of base64Needles(record)) whole += search(c.id, b64, 'float32-record-base64')
        if (whole === 0 && !isText && c.features.length > window) {
          for (let s = 0; s + window <= c.features.length; s += window) search(c.id, record.subarray(s * 4, (s + window) * 4), 'float32-window')
        }
      }
      if (options.values !== false && !isText) {
        for (const v of c.values) search(c.id, float32le([v]), 'float32-value')
      }
    }
  }
  return found
}

/** One line per occurrence, for a failing test's message. */
export function describeOccurrences (found: readonly Occurrence[]): string {
  return found.map(o => `${o.canary} in haystack ${String(o.haystack)} at ${o.offset} as ${o.encoding}`).join('\n')
}
