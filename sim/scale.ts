/**
 * Topologies for scaling runs (bench/sim-scale.ts): N sites on four regions,
 * a fixed number of training rows per site (so each site's work per round
 * does not change with N), MNIST split into two label shards per site, one
 * expert per site, top-2 gates. Also the figures one run yields, and the
 * growth exponent of a figure against N.
 */
import { parseTopology, type Topology } from './topology.ts'
import type { MoeMethodResult } from './moe-method.ts'

export interface ScaleSpec {
  sites: number
  transport: 'tcp' | 'memory'
  rounds: number
  rowsPerSite: number
  testLimit: number
  seed: number
  /** Count payload frames by protocol and kind (needs the sites in the bench's process). */
  census?: boolean
}

const REGIONS = ['eu', 'us', 'asia', 'africa']

export function scaleTopology (spec: ScaleSpec): Topology {
  const width = String(spec.sites).length < 2 ? 2 : String(spec.sites).length
  return parseTopology({
    name: `scale-${spec.sites}`,
    description: `${spec.sites} sites, ${spec.rowsPerSite} rows each (bench/sim-scale.ts)`,
    seed: spec.seed,
    transport: spec.transport,
    // Every site in the bench's process, as the figures so far were measured (and --census taps every frame here).
    execution: 'inline',
    federation: {
      model: { kind: 'moe', inputDim: 784, width: 32, expertHidden: 32, experts: spec.sites, topK: 2, classes: 10, seed: 0 },
      strategy: { kind: 'fedavg' },
      rounds: spec.rounds,
      localSteps: 5,
      batchSize: 32,
      compression: { kind: 'int8' },
      quorum: 0.5,
      roundTimeoutS: 300
    },
    data: { source: { kind: 'mnist' }, partition: { kind: 'shards', shardsPerSite: 2 }, trainLimit: Math.min(60_000, spec.rowsPerSite * spec.sites), testLimit: spec.testLimit },
    sites: Array.from({ length: spec.sites }, (_, i) => ({ name: `s${String(i).padStart(width, '0')}`, region: REGIONS[i % REGIONS.length], experts: [i] })),
    links: {
      default: { latencyMs: 5, jitterMs: 1, bandwidthMbps: 1000, loss: 0 },
      regions: [{ between: ['eu', 'us'], latencyMs: 40 }, { between: ['eu', 'asia'], latencyMs: 60 }, { between: ['us', 'asia'], latencyMs: 60 }]
    },
    faults: []
  }, `scale topology of ${spec.sites} sites`)
}

export interface ScaleFigures {
  sites: number
  /** Round 0 (routing releases, first connections' payload) bytes sent, per site. */
  setupBytesPerSite: number
  /** Median over rounds >= 1 of the bytes sent in the round, per site (retries make single rounds noisy). */
  roundBytesPerSite: number
  /** The final expert publication (every member fetches every site's expert), per site. */
  publicationBytesPerSite: number
  /** Median wall time of rounds >= 1. */
  roundSeconds: number
  setupSeconds: number
  wallSeconds: number
  accuracy: number
  peakRssBytes: number
  /** With `census`: payload frames by protocol and kind over the whole run (createFrameCensus). */
  frames?: Record<string, FrameCount>
}

export function scaleFigures (sites: number, moe: MoeMethodResult, peakRssBytes: number): ScaleFigures {
  const setup = moe.rounds.find(r => r.round === 0)
  const rounds = moe.rounds.filter(r => r.round >= 1)
  const durations = rounds.map(r => r.durationS).sort((a, b) => a - b)
  const bytes = rounds.map(r => r.bytesSent).sort((a, b) => a - b)
  return {
    sites,
    setupBytesPerSite: Math.round((setup?.bytesSent ?? 0) / sites),
    roundBytesPerSite: Math.round(median(bytes) / sites),
    publicationBytesPerSite: Math.round(moe.publication.bytesSent / sites),
    roundSeconds: median(durations),
    setupSeconds: setup?.durationS ?? 0,
    wallSeconds: moe.wallSeconds,
    accuracy: moe.assembled.accuracy,
    peakRssBytes
  }
}

const median = (sorted: readonly number[]): number => sorted.length === 0 ? 0 : (sorted[Math.floor((sorted.length - 1) / 2)]! + sorted[Math.ceil((sorted.length - 1) / 2)]!) / 2

/** Least-squares slope of log y against log x: y grows as x^slope. */
export function growthExponent (x: readonly number[], y: readonly number[]): number {
  const pts = x.map((v, i) => [Math.log(v), Math.log(Math.max(y[i]!, Number.MIN_VALUE))] as const)
  const mx = pts.reduce((a, p) => a + p[0], 0) / pts.length
  const my = pts.reduce((a, p) => a + p[1], 0) / pts.length
  const sxx = pts.reduce((a, p) => a + (p[0] - mx) ** 2, 0)
  if (sxx === 0) return NaN
  return pts.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0) / sxx
}

/**
 * Counts the payload frames every site writes, by protocol and header kind,
 * from the plaintext wire tap (`wireTap` of runNetworkedMoe; inline runs
 * only). An update frame for a (site, round) seen before is a *resend*; a
 * model `announce` is a committed model pushed to a member, a model `get` a
 * member fetching one (catch-up). Bytes of body parts go to the last frame
 * head seen on the same (site, peer, protocol).
 */
export interface FrameCount { frames: number, bytes: number }
export interface FrameCensus {
  tap: (site: string, direction: 'out' | 'in', peerId: string, protocol: string, bytes: Uint8Array) => void
  /** `<protocol>:<kind>` (protocol without its /forgemesh/ prefix and version) -> frames and bytes; update resends as `update:update(resend)`. */
  counts: () => Record<string, FrameCount>
}

const HEAD_BYTES = 8
const textDecoder = new TextDecoder()

function frameHead (bytes: Uint8Array): { kind?: unknown, round?: unknown, site?: unknown } | undefined {
  if (bytes.byteLength < HEAD_BYTES + 2 || bytes[HEAD_BYTES] !== 0x7b) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(4) !== bytes.byteLength - HEAD_BYTES) return undefined
  try {
    return JSON.parse(textDecoder.decode(bytes.subarray(HEAD_BYTES))) as { kind?: unknown }
  } catch {
    return undefined
  }
}

export function createFrameCensus (): FrameCensus {
  const counts = new Map<string, FrameCount>()
  const lastKey = new Map<string, string>()
  const updatesSeen = new Set<string>()
  const add = (key: string, frames: number, bytes: number): void => {
    const c = counts.get(key) ?? { frames: 0, bytes: 0 }
    c.frames += frames
    c.bytes += bytes
    counts.set(key, c)
  }
  return {
    tap: (site, direction, peerId, protocol, bytes) => {
      if (direction !== 'out') return
      const name = protocol.replace(/^\/forgemesh\//, '').replace(/\/[0-9.]+$/, '')
      const stream = `${site}\u0000${peerId}\u0000${protocol}`
      const head = frameHead(bytes)
      if (head === undefined) {
        add(lastKey.get(stream) ?? `${name}:?`, 0, bytes.byteLength)
        return
      }
      let kind = typeof head.kind === 'string' ? head.kind : '?'
      if (name === 'update' && kind === 'update') {
        const id = `${String(head.site)}\u0000${String(head.round)}`
        if (updatesSeen.has(id)) kind = 'update(resend)'
        updatesSeen.add(id)
      }
      const key = `${name}:${kind}`
      lastKey.set(stream, key)
      add(key, 1, bytes.byteLength)
    },
    counts: () => Object.fromEntries([...counts.entries()].map(([k, c]) => [k, { ...c }] as const).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
  }
}
