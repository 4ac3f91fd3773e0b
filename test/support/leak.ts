/**
 * The end-to-end leak test's capture and search (docs/data.md, "Proof that
 * raw data stays home").
 *
 * Capture: every frame byte each site writes to or reads from a stream
 * (the wire tap, plaintext before Noise), every log line, anything written
 * to stdout/stderr during the run, and afterwards each site's LevelDB store,
 * both as raw files and as every key and value read back through LevelDB
 * (classic-level compresses tables with snappy by default, so the files
 * alone are not enough).
 *
 * Search, for each canary, in every haystack (a store is not searched for
 * its own site's canaries):
 *   - findCanaries (test/support/canary.ts): the id as UTF-8 / UTF-16LE /
 *     text, the whole float32-LE record at any offset and in base64;
 *   - float32-LE and float64-LE values at every byte offset: a run of at least
 *     `minRun` consecutive record values in order, or at least `minScattered`
 *     distinct record values anywhere in one haystack (any order, any stride:
 *     a row written as a matrix column);
 *   - the record as uint8 pixels (round(v * 255), the IDX file's raw form);
 *   - decimal numbers in text (logs, JSON in frames and store records) that
 *     round to a record value as float32: runs and scattered as above.
 * A single 4-byte value can match by chance, so single hits below the
 * thresholds are counted (chanceHits) and not reported as findings.
 */
import { readdir, readFile } from 'node:fs/promises'
import { endianness } from 'node:os'
import { join } from 'node:path'
import { format } from 'node:util'
import { Level } from 'level'
import { findCanaries, type Canary, type Encoding } from './canary.ts'

export type HaystackKind = 'frames' | 'log' | 'stdio' | 'store-file' | 'store-entries' | 'report'

export interface Haystack {
  name: string
  kind: HaystackKind
  /** The site whose store this is: its own canaries are not searched here. */
  owner?: string
  data: Uint8Array | string
}

export type LeakEncoding = Encoding | 'uint8-record' | `${'float32' | 'float64' | 'decimal'}-${'run' | 'scattered'}`

export interface Finding {
  canary: string
  site: string
  haystack: string
  kind: HaystackKind
  encoding: LeakEncoding
  /** Byte offset (characters in text) of the first hit. */
  offset: number
  /** Record values found: the run's length, or the distinct values scattered. */
  values: number
}

export interface SearchReport {
  findings: Finding[]
  haystacks: number
  /** Bytes (characters for text) searched, by haystack kind. */
  bytes: Partial<Record<HaystackKind, number>>
  /** Record values matched singly, below both thresholds: chance level, not findings. */
  chanceHits: number
  /** Most distinct values of one canary seen in one haystack without a finding. */
  maxScattered: number
}

export interface SearchOptions {
  /** Consecutive record values that make a partial leak. Default 8 (32 bytes as float32). */
  minRun?: number
  /** Distinct record values of one canary in one haystack that make a leak. Default 32. */
  minScattered?: number
}

// ---- capture ----------------------------------------------------------------

export interface CaptureSummary { chunks: number, bytesOut: number, bytesIn: number, logLines: number, stdioWrites: number, protocols: string[] }

export interface LeakCapture {
  wireTap: (site: string, direction: 'out' | 'in', peerId: string, protocol: string, bytes: Uint8Array) => void
  logSink: (line: string) => void
  /** Copies every process.stdout/stderr write and console call into the capture (and passes it on unless told not to) until the returned function runs. */
  teeStdio: (options?: { passThrough?: boolean }) => () => void
  /** One haystack per (site, direction, peer, protocol): that stream's bytes in arrival order. */
  frames: (peerName?: (peerId: string) => string | undefined) => Haystack[]
  logs: () => Haystack[]
  summary: () => CaptureSummary
}

export function createLeakCapture (): LeakCapture {
  const streams = new Map<string, { site: string, direction: 'out' | 'in', peerId: string, protocol: string, chunks: Uint8Array[] }>()
  const lines: string[] = []
  const stdio: string[] = []
  let chunks = 0
  let bytesOut = 0
  let bytesIn = 0
  return {
    wireTap: (site, direction, peerId, protocol, bytes) => {
      const key = `${site}\u0000${direction}\u0000${peerId}\u0000${protocol}`
      let s = streams.get(key)
      if (s === undefined) streams.set(key, s = { site, direction, peerId, protocol, chunks: [] })
      // A copy: the tap must see what was sent, whatever the sender does with its buffer later.
      s.chunks.push(bytes.slice())
      chunks++
      if (direction === 'out') bytesOut += bytes.byteLength
      else bytesIn += bytes.byteLength
    },
    logSink: (line) => { lines.push(line) },
    teeStdio: (options = {}) => {
      const pass = options.passThrough ?? true
      const undo: Array<() => void> = []
      for (const stream of [process.stdout, process.stderr]) {
        const original = stream.write
        stream.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
          stdio.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('latin1'))
          return pass ? (original as (...a: unknown[]) => boolean).call(this, chunk, ...rest) : true
        } as typeof stream.write
        undo.push(() => { stream.write = original })
      }
      // Test runners replace console with their own streams: catch it at the call too.
      for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
        const original = console[method]
        console[method] = (...args: unknown[]) => {
          stdio.push(format(...args) + '\n')
          if (pass) original.apply(console, args)
        }
        undo.push(() => { console[method] = original })
      }
      return () => { for (const u of undo.reverse()) u() }
    },
    frames: (peerName = () => undefined) => [...streams.values()].map(s => ({
      name: `frames ${s.site}${s.direction === 'out' ? '>' : '<'}${peerName(s.peerId) ?? s.peerId} ${s.protocol}`,
      kind: 'frames' as const,
      data: Buffer.concat(s.chunks)
    })),
    logs: () => [
      { name: 'log lines', kind: 'log' as const, data: lines.join('\n') },
      { name: 'stdout+stderr', kind: 'stdio' as const, data: stdio.join('') }
    ],
    summary: () => ({ chunks, bytesOut, bytesIn, logLines: lines.length, stdioWrites: stdio.length, protocols: [...new Set([...streams.values()].map(s => s.protocol))].sort() })
  }
}

/**
 * A closed site store as haystacks: every file of its folder as it lies on
 * disk, then every key and value read back through LevelDB, one haystack per
 * sublevel (keys are `!<sublevel>!<key>`).
 */
export async function storeHaystacks (path: string, owner: string): Promise<Haystack[]> {
  const out: Haystack[] = []
  for (const file of (await readdir(path)).sort()) {
    out.push({ name: `store ${owner} file ${file}`, kind: 'store-file', owner, data: await readFile(join(path, file)) })
  }
  const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view', createIfMissing: false })
  await db.open()
  try {
    const bySub = new Map<string, Uint8Array[]>()
    for await (const [key, value] of db.iterator()) {
      const k = Buffer.from(key).toString('latin1')
      const sub = k.startsWith('!') ? k.slice(1, Math.max(1, k.indexOf('!', 1))) : '(root)'
      let parts = bySub.get(sub)
      if (parts === undefined) bySub.set(sub, parts = [])
      parts.push(key, value)
    }
    for (const [sub, parts] of [...bySub].sort(([a], [b]) => a < b ? -1 : 1)) {
      out.push({ name: `store ${owner} entries ${sub}`, kind: 'store-entries', owner, data: Buffer.concat(parts) })
    }
  } finally {
    await db.close()
  }
  return out
}

// ---- search -----------------------------------------------------------------

interface Ref { canary: number, index: number, low: number }

/** Record values by bit pattern; `seen` is a bitmap (2 MiB) on the top 24 bits so most words cost one array read. */
interface ValueTable { seen: Uint8Array, refs: Map<number, Ref[]> }

const f32 = new Float32Array(1)
const u32of32 = new Uint32Array(f32.buffer)
const f64 = new Float64Array(1)
const u32of64 = new Uint32Array(f64.buffer)

function bits32 (v: number): number {
  f32[0] = v
  return u32of32[0]!
}

function tables (canaries: readonly Canary[]): { t32: ValueTable, t64: ValueTable } {
  const t32: ValueTable = { seen: new Uint8Array(1 << 21), refs: new Map() }
  const t64: ValueTable = { seen: new Uint8Array(1 << 21), refs: new Map() }
  const add = (t: ValueTable, key: number, ref: Ref): void => {
    t.seen[key >>> 11]! |= 1 << ((key >>> 8) & 7)
    const list = t.refs.get(key)
    if (list === undefined) t.refs.set(key, [ref])
    else list.push(ref)
  }
  canaries.forEach((c, ci) => {
    c.features?.forEach((v, index) => {
      add(t32, bits32(v), { canary: ci, index, low: 0 })
      f64[0] = v
      add(t64, u32of64[1]!, { canary: ci, index, low: u32of64[0]! })
    })
  })
  return { t32, t64 }
}

/** `pos` places the hit for the run test (bytes, or tokens for decimals); `at` is what a finding reports. */
interface Hit { canary: number, index: number, pos: number, at: number, width: number }

/** float32 and float64 (little-endian) record values at every byte offset. */
function scanFloats (bytes: Uint8Array, t32: ValueTable, t64: ValueTable): { h32: Hit[], h64: Hit[] } {
  const h32: Hit[] = []
  const h64: Hit[] = []
  for (let a = 0; a < 4; a++) {
    const n = Math.floor((bytes.byteLength - a) / 4)
    if (n <= 0) continue
    const words = new Uint32Array(n)
    new Uint8Array(words.buffer).set(bytes.subarray(a, a + 4 * n))
    for (let k = 0; k < n; k++) {
      const w = words[k]!
      if ((t32.seen[w >>> 11]! & (1 << ((w >>> 8) & 7))) !== 0) {
        for (const r of t32.refs.get(w) ?? []) h32.push({ canary: r.canary, index: r.index, pos: a + 4 * k, at: a + 4 * k, width: 4 })
      }
      if (k > 0 && (t64.seen[w >>> 11]! & (1 << ((w >>> 8) & 7))) !== 0) {
        for (const r of t64.refs.get(w) ?? []) if (r.low === words[k - 1]) h64.push({ canary: r.canary, index: r.index, pos: a + 4 * (k - 1), at: a + 4 * (k - 1), width: 8 })
      }
    }
  }
  return { h32, h64 }
}

const DECIMAL = /-?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+/g

/** Decimal numbers that round to a record value as float32; consecutive tokens are consecutive positions. */
function scanDecimals (text: string, t32: ValueTable): Hit[] {
  const hits: Hit[] = []
  let token = 0
  for (const m of text.matchAll(DECIMAL)) {
    const w = bits32(Number(m[0]))
    if ((t32.seen[w >>> 11]! & (1 << ((w >>> 8) & 7))) !== 0) for (const r of t32.refs.get(w) ?? []) hits.push({ canary: r.canary, index: r.index, pos: token, at: m.index, width: 1 })
    token++
  }
  return hits
}

/** Runs of consecutive record values (same diagonal: offset - width * index) and distinct values per canary. */
function judge (hits: Hit[], kind: 'float32' | 'float64' | 'decimal', hay: Haystack, canaries: readonly Canary[], options: Required<SearchOptions>, report: SearchReport): void {
  const byCanary = new Map<number, Hit[]>()
  for (const h of hits) {
    const list = byCanary.get(h.canary)
    if (list === undefined) byCanary.set(h.canary, [h])
    else list.push(h)
  }
  for (const [ci, list] of byCanary) {
    const c = canaries[ci]!
    const length = c.features!.length
    const diagonals = new Map<number, Map<number, number>>()
    for (const h of list) {
      const d = h.pos - h.width * h.index
      let m = diagonals.get(d)
      if (m === undefined) diagonals.set(d, m = new Map())
      if (!m.has(h.index)) m.set(h.index, h.at)
    }
    let found = false
    for (const m of diagonals.values()) {
      const indices = [...m.keys()].sort((a, b) => a - b)
      for (let s = 0; s < indices.length;) {
        let e = s
        while (e + 1 < indices.length && indices[e + 1] === indices[e]! + 1) e++
        const run = e - s + 1
        // A whole float32 record is findCanaries' float32-record finding already.
        const whole32 = kind === 'float32' && run === length
        if (run >= options.minRun) {
          found = true
          if (!whole32) report.findings.push({ canary: c.id, site: c.site, haystack: hay.name, kind: hay.kind, encoding: `${kind}-run`, offset: m.get(indices[s]!)!, values: run })
        }
        s = e + 1
      }
    }
    const distinct = new Set(list.map(h => h.index)).size
    if (!found && distinct >= options.minScattered) {
      found = true
      report.findings.push({ canary: c.id, site: c.site, haystack: hay.name, kind: hay.kind, encoding: `${kind}-scattered`, offset: list.reduce((a, h) => Math.min(a, h.at), Infinity), values: distinct })
    }
    if (!found) {
      report.chanceHits += list.length
      report.maxScattered = Math.max(report.maxScattered, distinct)
    }
  }
}

/** Every canary in every haystack, in every encoding listed at the top of this file. */
export function searchLeaks (haystacks: readonly Haystack[], canaries: readonly Canary[], options: SearchOptions = {}): SearchReport {
  if (endianness() !== 'LE') throw new Error('the float scan reads words in host byte order and expects a little-endian host')
  const opts = { minRun: options.minRun ?? 8, minScattered: options.minScattered ?? 32 }
  const report: SearchReport = { findings: [], haystacks: haystacks.length, bytes: {}, chanceHits: 0, maxScattered: 0 }
  // Tables are built once per set of canaries searched (one per store owner), not per haystack.
  const cache = new Map<string, ReturnType<typeof tables>>()
  for (const hay of haystacks) {
    const wanted = canaries.filter(c => c.site !== hay.owner)
    report.bytes[hay.kind] = (report.bytes[hay.kind] ?? 0) + (typeof hay.data === 'string' ? hay.data.length : hay.data.byteLength)
    if (wanted.length === 0) continue
    const longest = Math.max(1, ...wanted.map(c => c.features?.length ?? 0))
    // window = the longest record: partial records are the float scan's job (any offset, any run >= minRun).
    for (const o of findCanaries({ [hay.name]: hay.data }, wanted, { window: longest, values: false })) {
      const c = wanted.find(w => w.id === o.canary)!
      report.findings.push({ canary: c.id, site: c.site, haystack: hay.name, kind: hay.kind, encoding: o.encoding, offset: o.offset, values: o.encoding.startsWith('float32') ? c.features!.length : 0 })
    }
    const withVectors = wanted.filter(c => c.features !== undefined && c.features.length > 0)
    if (withVectors.length === 0) continue
    const key = withVectors.map(c => c.id).join(',')
    let t = cache.get(key)
    if (t === undefined) cache.set(key, t = tables(withVectors))
    const { t32, t64 } = t
    const text = typeof hay.data === 'string' ? hay.data : Buffer.from(hay.data.buffer, hay.data.byteOffset, hay.data.byteLength).toString('latin1')
    if (typeof hay.data !== 'string') {
      const bytes = Buffer.from(hay.data.buffer, hay.data.byteOffset, hay.data.byteLength)
      const { h32, h64 } = scanFloats(bytes, t32, t64)
      judge(h32, 'float32', hay, withVectors, opts, report)
      judge(h64, 'float64', hay, withVectors, opts, report)
      for (const c of withVectors) {
        const pixels = Buffer.from(Array.from(c.features!, v => Math.round(v * 255)))
        for (let at = bytes.indexOf(pixels); at !== -1; at = bytes.indexOf(pixels, at + 1)) {
          report.findings.push({ canary: c.id, site: c.site, haystack: hay.name, kind: hay.kind, encoding: 'uint8-record', offset: at, values: pixels.length })
        }
      }
    }
    judge(scanDecimals(text, t32), 'decimal', hay, withVectors, opts, report)
  }
  return report
}

/** One line per finding, for a failing test's message. */
export function describeFindings (findings: readonly Finding[]): string {
  return findings.map(f => `${f.canary} (planted at ${f.site}) in ${f.haystack} at ${f.offset} as ${f.encoding} (${f.values} values)`).join('\n')
}
