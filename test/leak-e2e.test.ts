/**
 * The end-to-end proof of "raw data never leaves its site".
 *
 * Clean run: canary records (distinct off-grid pixel values) are planted in
 * every site's rows; three real sites run the simulator's networked MoE over
 * loopback libp2p (routing releases, expert artifacts, federated rounds,
 * heartbeats). Every frame byte each site wrote or read (before Noise), every
 * log line, stdout/stderr, the simulator's result and every other site's
 * store (files on disk and every key/value read back) are searched for every
 * canary in every encoding of test/support/leak.ts: zero occurrences.
 *
 * The search has teeth: in the same run it finds a vector that did cross
 * (each site's trained expert weights) in the frames and in the other
 * stores; and a federation with a leaky site (a learner whose update is a
 * raw row, a protocol handler that hands out rows in five encodings, a log
 * line and a console print of pixel values) is caught, each leak under its
 * encoding and place.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { DP_ROUTING } from '../coordinator/routing/config.ts'
import { createLogger, systemClock } from '../node/components.ts'
import { createBatchSource } from '../node/data/batches.ts'
import type { LabeledData } from '../node/data/types.ts'
import { createExpertRegistry } from '../node/experts/registry.ts'
import { identityFromSeed } from '../node/identity.ts'
import { selectBackend } from '../node/model/backend.ts'
import type { Learner } from '../node/site/learner.ts'
import { createRegressionLearner } from '../node/site/regression-learner.ts'
import { openSiteStore } from '../node/store.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import { UPDATE_PROTOCOL } from '../protocols/update/constants.ts'
import { loadSimData, type SimData } from '../sim/data.ts'
import { createFleet } from '../sim/fleet.ts'
import { runNetworkedMoe, type MoeMethodResult } from '../sim/moe-method.ts'
import { parseTopology, type Topology } from '../sim/topology.ts'
import { waitFor } from './mesh-helpers.ts'
import { findCanaries, makeVectorCanaries, plantCanaries, type Canary } from './support/canary.ts'
import { createLeakCapture, describeFindings, searchLeaks, storeHaystacks, type Haystack, type LeakCapture, type SearchReport } from './support/leak.ts'

const SITES = ['alpha', 'bravo', 'charlie'] as const
const CANARIES_PER_SITE = 4
/** Enough local steps that two rounds of batches of 32 pass over every row of the largest site (1,183 rows). */
const LOCAL_STEPS = 20
const ROUNDS = 2

const topology: Topology = parseTopology({
  name: 'leak-e2e',
  seed: 11,
  transport: 'tcp',
  // Every frame of every site is tapped in this process, and rows with canaries planted are handed to the sites.
  execution: 'inline',
  federation: {
    model: { width: 32, expertHidden: 32 },
    rounds: ROUNDS,
    localSteps: LOCAL_STEPS,
    batchSize: 32,
    // Updates as plain float32: a row smuggled into an update would be visible to the float search.
    compression: { kind: 'none' },
    roundTimeoutS: 60
  },
  data: { partition: { kind: 'labels' }, trainLimit: 3000, testLimit: 500 },
  sites: [
    { name: 'alpha', labels: [0, 1, 2], experts: [0] },
    { name: 'bravo', labels: [3, 4, 5], experts: [1] },
    { name: 'charlie', labels: [6, 7, 8, 9], experts: [2] }
  ],
  links: { default: { latencyMs: 1, jitterMs: 0, bandwidthMbps: 1000, loss: 0 } }
}, 'leak-e2e topology')

/** The simulator's seeded site identities (sim/fleet.ts), to name the peers in haystack names. */
async function peerNames (t: Topology): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const s of t.sites) {
    const id = await identityFromSeed(createHash('sha256').update(`forgemesh sim identity/${t.seed}/${s.name}`).digest())
    out.set(id.peerId, s.name)
  }
  return out
}

const peerOf = (names: Map<string, string>, site: string): string => [...names].find(([, n]) => n === site)![0]

const haystackBytes = (hs: readonly Haystack[]): number => hs.reduce((a, h) => a + (typeof h.data === 'string' ? h.data.length : h.data.byteLength), 0)

describe('searchLeaks: thresholds, owners and encodings', () => {
  const [c] = makeVectorCanaries(1, 784, 'alpha', 3)
  const f = c!.features!
  const at = (bytes: Uint8Array, offset: number, size = offset + bytes.byteLength + 5): Uint8Array => { const b = new Uint8Array(size); b.set(bytes, offset); return b }
  const search = (data: Uint8Array | string, owner?: string): SearchReport => searchLeaks([{ name: 'h', kind: 'frames', data, ...(owner !== undefined ? { owner } : {}) }], [c!])

  it('reports a run of 8 consecutive values at an odd offset, not 7', () => {
    expect(search(at(float32Bytes(f.subarray(50, 57)), 3)).findings).toEqual([])
    expect(search(at(float32Bytes(f.subarray(50, 57)), 3)).chanceHits).toBe(7)
    expect(search(at(float32Bytes(f.subarray(50, 58)), 3)).findings).toEqual([{ canary: c!.id, site: 'alpha', haystack: 'h', kind: 'frames', encoding: 'float32-run', offset: 3, values: 8 }])
  })

  it('reports 32 distinct values in any order as scattered, not 31', () => {
    const reversed = (n: number): Uint8Array => float32Bytes(Array.from(f.subarray(0, n)).reverse())
    expect(search(at(reversed(31), 0)).maxScattered).toBe(31)
    expect(search(at(reversed(31), 0)).findings).toEqual([])
    expect(search(at(reversed(32), 1)).findings.map(x => [x.encoding, x.offset, x.values])).toEqual([['float32-scattered', 1, 32]])
  })

  it('does not search a store for its own site\'s canaries', () => {
    const whole = at(float32Bytes(f), 0)
    expect(search(whole, 'alpha').findings).toEqual([])
    expect(search(whole, 'bravo').findings.map(x => x.encoding)).toEqual(['float32-record'])
  })

  it('finds decimals that round to the float32 values, not the same values printed to 4 digits', () => {
    const row = Array.from(f.subarray(10, 20))
    expect(search(JSON.stringify({ row })).findings.map(x => [x.encoding, x.values])).toEqual([['decimal-run', 10]])
    expect(search(row.map(v => v.toFixed(4)).join(',')).findings).toEqual([])
  })
})

describe('leak test: a real three-site federated MoE run', () => {
  let dir: string
  let data: SimData
  let canaries: Canary[]
  let capture: LeakCapture
  let result: MoeMethodResult
  let haystacks: Haystack[]
  let report: SearchReport
  let names: Map<string, string>

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fm-leak-e2e-'))
    capture = createLeakCapture()
    const logger = createLogger('forgemesh:leak-e2e', { level: 'debug', format: 'json', sink: capture.logSink })
    await selectBackend('wasm', logger)
    data = await loadSimData(topology)
    canaries = []
    data.sites = data.sites.map((own, i) => {
      const planted = makeVectorCanaries(CANARIES_PER_SITE, own.dim, SITES[i]!, topology.seed, own.numClasses)
      canaries.push(...planted)
      return plantCanaries(own, planted, `${topology.seed}/plant/${SITES[i]!}`)
    })
    const untee = capture.teeStdio()
    try {
      result = await runNetworkedMoe(topology, data, {
        dir,
        evalRounds: new Set([ROUNDS]),
        // The simulator's DP routing releases, with a small PCA space to keep the run short.
        routing: { ...DP_ROUTING, components: 8, cellBits: 1, minCount: 20 },
        wireTap: capture.wireTap
      }, { logger })
    } finally {
      untee()
    }
    names = await peerNames(topology)
    const stores = (await Promise.all(SITES.map(async s => await storeHaystacks(join(dir, 'stores', s), s)))).flat()
    haystacks = [
      ...capture.frames(p => names.get(p)),
      ...capture.logs(),
      { name: 'simulator result', kind: 'report', data: JSON.stringify(result) },
      ...stores
    ]
    report = searchLeaks(haystacks, canaries)
  })

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('trains on every canary: each is in the batches its site draws in the run', () => {
    expect(canaries).toHaveLength(SITES.length * CANARIES_PER_SITE)
    SITES.forEach((name, i) => {
      const own = data.sites[i]!
      // The simulator's batch source for this site (sim/moe-method.ts), replayed over the run's steps.
      const src = createBatchSource(own, { seed: `${topology.seed}/site-${name}` })
      const drawn = Array.from({ length: ROUNDS * LOCAL_STEPS }, () => new Uint8Array(src.next(topology.federation.batchSize).x.buffer))
      for (const c of canaries.filter(k => k.site === name)) {
        expect(findCanaries(drawn, [c], { values: false }).filter(o => o.encoding === 'float32-record').length, `${c.id} in ${name}'s batches`).toBeGreaterThanOrEqual(1)
      }
    })
    // Every site took part in every round, so it drew those batches; the run trained and scored.
    expect(result.rounds.filter(r => r.round > 0).map(r => r.participants)).toEqual(Array.from({ length: ROUNDS }, () => [...SITES]))
    expect(result.assembled.accuracy).toBeGreaterThan(0.3)
  })

  it('captured every protocol of the run, every site, the logs and three stores', () => {
    const s = capture.summary()
    for (const p of ['/forgemesh/artifact/', '/forgemesh/experts-announce/', '/forgemesh/membership/', '/forgemesh/model/', '/forgemesh/update/']) {
      expect(s.protocols.some(x => x.startsWith(p)), p).toBe(true)
    }
    const frames = haystacks.filter(h => h.kind === 'frames')
    for (const site of SITES) {
      for (const way of ['>', '<']) {
        expect(haystackBytes(frames.filter(h => h.name.startsWith(`frames ${site}${way}`) && h.name.includes('/forgemesh/artifact/'))), `${site}${way} artifact bytes`).toBeGreaterThan(10_000)
      }
      const store = haystacks.filter(h => h.owner === site)
      expect(store.some(h => h.kind === 'store-file' && /\.(log|ldb)$/.test(h.name)), `${site} store files`).toBe(true)
      for (const sub of ['blobs', 'rounds', 'experts']) expect(store.some(h => h.name === `store ${site} entries ${sub}`), `${site} ${sub}`).toBe(true)
    }
    expect(s.bytesOut).toBeGreaterThan(2_000_000)
    expect(s.bytesIn).toBeGreaterThan(2_000_000)
    expect(s.logLines).toBeGreaterThan(50)
    expect(report.haystacks).toBe(haystacks.length)
  })

  it('finds no canary in any frame byte, log line, stdout/stderr, the result, or another site\'s store', () => {
    expect(report.findings, describeFindings(report.findings)).toEqual([])
    // Single float values that matched by chance stay far below the 32 distinct values that make a finding.
    expect(report.maxScattered).toBeLessThan(8)
  })

  it('finds what did cross: each site\'s trained expert weights, in its artifact frames and in the other stores', async () => {
    const controls: Canary[] = []
    for (const site of SITES) {
      const store = await openSiteStore(join(dir, 'stores', site))
      try {
        const registry = createExpertRegistry({ store, clock: systemClock })
        // The site's latest artifact carrying expert weights: its trained expert, sent to every member.
        const own = (await registry.list()).filter(r => r.manifest.siteId === peerOf(names, site)).sort((a, b) => b.manifest.version - a.manifest.version)
        let expert: [string, { data: Float32Array }] | undefined
        for (const r of own) {
          expert ??= [...(await registry.load(r.hash)).weights].filter(([n]) => n.startsWith('expert.')).sort(([, a], [, b]) => b.data.length - a.data.length)[0]
        }
        expect(expert, `${site}'s expert artifact`).toBeDefined()
        const [name, t] = expert!
        controls.push({ id: `CONTROL-${site}-${name}`, site, texts: [], values: [], features: t.data.slice(0, 256) })
      } finally {
        await store.close()
      }
    }
    const found = searchLeaks(haystacks, controls).findings
    for (const c of controls) {
      const mine = found.filter(f => f.canary === c.id)
      expect(mine.some(f => f.kind === 'frames' && f.haystack.startsWith(`frames ${c.site}>`) && f.haystack.includes('/forgemesh/artifact/') && f.encoding.startsWith('float32')), describeFindings(mine)).toBe(true)
      for (const other of SITES.filter(s => s !== c.site)) {
        expect(mine.some(f => f.haystack === `store ${other} entries blobs` && f.encoding === 'float32-record'), `${c.id} in ${other}'s blobs`).toBe(true)
      }
      expect(mine.filter(f => f.kind === 'log' || f.kind === 'stdio')).toEqual([])
    }
  })
})

// ---- a leaky site -----------------------------------------------------------

const LEAK_PROTOCOL = '/forgemesh/exfil/1.0.0'

/** A site's rows for a linear-regression learner (dim 784, the label as the target). */
function regressionLearner (own: LabeledData): Learner {
  return createRegressionLearner({ x: Float64Array.from(own.x), y: Float64Array.from(own.y), dim: own.dim, lr: 1e-4 })
}

/**
 * Trains honestly, then reports shared weights of `start - row`, so that its
 * pseudo-gradient (start - now) is the raw row: exact in round 1, where the
 * regression learner starts from zeros.
 */
function smugglingLearner (inner: Learner, row: Float32Array, onTrain: () => void): Learner {
  let start: TensorMap | undefined
  let trained = false
  return {
    get sampleCount () { return inner.sampleCount },
    setShared: (p) => { start = p; trained = false; inner.setShared(p) },
    trainLocal: async (steps, options) => {
      const r = await inner.trainLocal(steps, options)
      trained = true
      onTrain()
      return r
    },
    getShared: () => {
      if (!trained || start === undefined) return inner.getShared()
      const s = start.get('w')!.data
      return new Map([['w', { shape: [row.length], data: Float32Array.from(s, (v, i) => v - row[i]!) }]])
    }
  }
}

function float32Bytes (v: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(v).buffer)
}

describe('leak test: a leaky site is caught', () => {
  it('finds each deliberately sent canary, naming its encoding and where, and none of the honest sites\'', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fm-leak-rogue-'))
    const t = parseTopology({
      name: 'leak-rogue',
      seed: 12,
      transport: 'tcp',
      federation: { rounds: 1, localSteps: 1, compression: { kind: 'none' }, roundTimeoutS: 30 },
      data: { partition: { kind: 'iid' } },
      sites: [{ name: 'alpha' }, { name: 'bravo' }, { name: 'mallory' }],
      links: { default: { latencyMs: 1, jitterMs: 0, bandwidthMbps: 1000, loss: 0 } }
    }, 'leak-rogue topology')
    const names = await peerNames(t)
    const mnist = await loadSimData({ ...t, data: { ...t.data, trainLimit: 600, testLimit: 10 } })
    const capture = createLeakCapture()
    const logger = createLogger('forgemesh:leak-rogue', { level: 'debug', format: 'json', sink: capture.logSink })
    const canaries: Canary[] = []
    const rows = t.sites.map((s, i) => {
      const planted = makeVectorCanaries(s.name === 'mallory' ? 8 : 3, 784, s.name, t.seed)
      canaries.push(...planted)
      return plantCanaries(mnist.sites[i]!, planted, `${t.seed}/plant/${s.name}`)
    })
    const m = canaries.filter(c => c.site === 'mallory').map(c => c.features!)
    const learners = t.sites.map((s, i) => s.name !== 'mallory'
      ? regressionLearner(rows[i]!)
      // Leak 6: a debug line with 24 pixel values of a row; leak 7: 12 of another printed to the console.
      : smugglingLearner(regressionLearner(rows[i]!), m[0]!, () => {
        logger.child('mallory').debug('train.sample', { pixels: Array.from(m[6]!.subarray(0, 24)) })
        console.warn('first pixels', Array.from(m[7]!.subarray(0, 12)))
      }))
    const fleet = await createFleet({
      topology: t,
      dir,
      settings: {
        strategy: { kind: 'fedavg' },
        compression: { kind: 'none' },
        localSteps: 1,
        minParticipants: 3,
        // Every update is needed: mallory's must not arrive after the round is committed without it.
        quorumFraction: 1,
        minUpdates: 3,
        roundTimeoutMs: 30_000,
        heartbeatIntervalMs: 200,
        heartbeatTimeoutMs: 2_000,
        retryMs: 50,
        seed: t.seed,
        // alpha coordinates, so mallory's update crosses the wire.
        priorities: { [peerOf(names, 'alpha')]: 10 }
      },
      specHash: createHash('sha256').update('forgemesh leak test: regression on 784 pixels').digest('hex')
    }, { clock: systemClock, random: createSeededRandom(t.seed), logger, learnerFor: i => learners[i]!, wireTap: capture.wireTap })
    const untee = capture.teeStdio({ passThrough: false })
    try {
      await fleet.start(() => true)
      await waitFor('every site to see the other two', () => fleet.up().every(s => s.site!.status().peers.filter(p => p.live && p.connected).length === 2), 30_000)
      const mallory = fleet.byName('mallory').site!
      // Leaks 1-5: a handler that hands out rows as a raw float32 record, float64, a matrix column
      // (every 4th value), 16 values of a row, and uint8 pixels.
      const column = new Float32Array(4 * 784)
      m[3]!.forEach((v, i) => { column[4 * i] = v; column[4 * i + 1] = 0.25; column[4 * i + 2] = -0.5 })
      const body = Buffer.concat([
        float32Bytes(m[1]!),
        new Uint8Array(Float64Array.from(m[2]!).buffer),
        new Uint8Array(column.buffer),
        float32Bytes(m[4]!.subarray(100, 116)),
        Uint8Array.from(m[5]!, v => Math.round(v * 255))
      ])
      await mallory.host.handle(LEAK_PROTOCOL, () => ({ header: { kind: 'rows' }, body }), { maxFrameBytes: 64 * 1024 })
      const pulled = await fleet.byName('bravo').site!.host.request(peerOf(names, 'mallory'), LEAK_PROTOCOL, { header: { kind: 'pull' } }, { maxFrameBytes: 64 * 1024 })
      expect(pulled.body?.byteLength).toBe(body.byteLength)
      // Leak 0: round 1, where mallory's update is its row.
      await Promise.all(fleet.up().map(async s => await s.site!.run({ untilRound: 1, signal: AbortSignal.timeout(30_000) })))
      expect(fleet.byName('alpha').site!.status().coordinator?.site).toBe('alpha')
    } finally {
      untee()
      await fleet.stop()
      for (const l of learners) await l.dispose?.()
    }
    const stores = (await Promise.all(t.sites.map(async s => await storeHaystacks(join(dir, 'stores', s.name), s.name)))).flat()
    const report = searchLeaks([...capture.frames(p => names.get(p)), ...capture.logs(), ...stores], canaries)
    await rm(dir, { recursive: true, force: true })
    const seen = [...new Set(report.findings.map(f => `${f.canary.split('-').slice(1, 3).join('-')} ${f.encoding} ${f.haystack} ${f.values}`))].sort()
    const ex = (k: number, encoding: string, values: number): string[] => [
      `mallory-${k} ${encoding} frames bravo<mallory ${LEAK_PROTOCOL} ${values}`,
      `mallory-${k} ${encoding} frames mallory>bravo ${LEAK_PROTOCOL} ${values}`
    ]
    expect(seen, describeFindings(report.findings)).toEqual([
      `mallory-0 float32-record frames alpha<mallory ${UPDATE_PROTOCOL} 784`,
      `mallory-0 float32-record frames mallory>alpha ${UPDATE_PROTOCOL} 784`,
      ...ex(1, 'float32-record', 784),
      ...ex(2, 'float64-run', 784),
      ...ex(3, 'float32-scattered', 784),
      ...ex(4, 'float32-run', 16),
      ...ex(5, 'uint8-record', 784),
      'mallory-6 decimal-run log lines 24',
      'mallory-7 decimal-run stdout+stderr 12'
    ].sort())
  })
})
