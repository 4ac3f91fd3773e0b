import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { DP_ROUTING, EXACT_ROUTING, type RoutingConfig } from '../coordinator/routing/config.ts'
import { rhoForEpsilon } from '../coordinator/routing/dp.ts'
import { encodeSiteRelease } from '../coordinator/routing/schema.ts'
import { partitionByLabelGroups } from '../coordinator/partition.ts'
import { createBatchSource, subset } from '../node/data/batches.ts'
import { loadMnist } from '../node/data/mnist.ts'
import type { LabeledData } from '../node/data/types.ts'
import { createMoeLearner, type MoeLearner } from '../node/federation/learner.ts'
import { labelGroups, recipeSpec } from '../node/federation/recipe.ts'
import { buildMemberRouter, decodeGlobalMoments, densityGates, encodeGlobalMoments, releaseRho, releaseSiteComponents, releaseSiteGlobal, sharedProjection } from '../node/federation/routing-releases.ts'
import { selectBackend } from '../node/model/backend.ts'
import { createPrivacyLedger } from '../node/privacy/ledger.ts'
import { openSiteStore, type SiteStore } from '../node/store.ts'

const logger = createSilentLogger()
let train: LabeledData
let sites: LabeledData[]

beforeAll(async () => {
  await selectBackend('wasm', logger)
  train = await loadMnist({ split: 'train', limit: 3000 })
  sites = partitionByLabelGroups(train.y, labelGroups(5, 2)).indices.map(ix => subset(train, ix))
})

const spec = (): ReturnType<typeof recipeSpec> => recipeSpec({ inputDim: 784, classes: 10, experts: 5, seed: 3, width: 16, expertHidden: 8 })
const bitsEqual = (a: Float32Array, b: Float32Array): boolean => a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0

describe('the MoE site learner', () => {
  let learner: MoeLearner
  afterEach(() => { learner?.dispose() })

  it('moves only the trunk, the head and its own expert; other experts and the unused router stay bit-identical', async () => {
    const site = 2
    learner = createMoeLearner({ spec: spec(), expert: site, data: createBatchSource(sites[site]!, { seed: 1 }) }, { logger })
    const before = learner.model.getParams()
    const r = await learner.trainLocal(5)
    expect(r.samples).toBe(5 * 32)
    expect(Number.isFinite(r.loss)).toBe(true)
    const after = learner.model.getParams()
    const changed = [...after.keys()].filter(n => !bitsEqual(after.get(n)!.data, before.get(n)!.data)).sort()
    // Biases included: every tensor of the trained groups moved, nothing else did.
    expect(changed).toEqual(['expert.2.b1', 'expert.2.b2', 'expert.2.w1', 'expert.2.w2', 'shared.head.b', 'shared.head.w', 'shared.trunk.b', 'shared.trunk.w'])
    expect(learner.sampleCount).toBe(sites[site]!.n)
    // No tensor outlives a round: train, exchange, publish.
    const held = tf.memory().numTensors
    for (let round = 0; round < 3; round++) {
      await learner.trainLocal(2)
      learner.setShared(learner.getShared())
      learner.expertParams()
    }
    expect(tf.memory().numTensors).toBe(held)
  })

  it('exchanges exactly the trunk and head: getShared/setShared round-trip, the router is never sent', async () => {
    learner = createMoeLearner({ spec: spec(), expert: 0, data: createBatchSource(sites[0]!, { seed: 1 }) }, { logger })
    const shared = learner.getShared()
    expect([...shared.keys()]).toEqual(['shared.head.b', 'shared.head.w', 'shared.trunk.b', 'shared.trunk.w'])
    expect([...shared.values()].reduce((a, t) => a + t.data.length, 0)).toBe(784 * 16 + 16 + 16 * 10 + 10)
    await learner.trainLocal(3)
    expect(bitsEqual(learner.getShared().get('shared.trunk.w')!.data, shared.get('shared.trunk.w')!.data)).toBe(false)
    learner.setShared(shared)
    for (const [n, t] of learner.getShared()) expect(bitsEqual(t.data, shared.get(n)!.data)).toBe(true)
    // A copy: changing what getShared returned does not touch the model.
    shared.get('shared.head.b')!.data[0] = 42
    expect(learner.getShared().get('shared.head.b')!.data[0]).not.toBe(42)

    const withRouter = new Map(shared)
    withRouter.set('shared.router.b', { shape: [5], data: new Float32Array(5) })
    expect(() => learner.setShared(withRouter)).toThrow(expect.objectContaining({ name: 'FederationError', message: expect.stringContaining('shared.router.b') }))
    const missing = new Map(shared)
    missing.delete('shared.head.w')
    expect(() => learner.setShared(missing)).toThrow(expect.objectContaining({ name: 'FederationError', message: 'setShared is missing shared.head.w' }))
    const badShape = new Map(shared)
    badShape.set('shared.head.b', { shape: [11], data: new Float32Array(11) })
    expect(() => learner.setShared(badShape)).toThrow(expect.objectContaining({ name: 'ParamMismatchError' }))
  })

  it('publishes its own expert and installs the others\' experts, refusing wrong slots and names', () => {
    learner = createMoeLearner({ spec: spec(), expert: 1, data: createBatchSource(sites[1]!, { seed: 1 }) }, { logger })
    const own = learner.expertParams()
    expect([...own.keys()]).toEqual(['expert.1.b1', 'expert.1.b2', 'expert.1.w1', 'expert.1.w2'])
    const other = new Map([...learner.model.getParams()].filter(([n]) => n.startsWith('expert.3.')).map(([n, t]) => [n, { shape: t.shape, data: t.data.map((_, i) => i % 7) }]))
    learner.setExpertParams(3, other)
    expect(Array.from(learner.model.getParams().get('expert.3.w2')!.data.slice(0, 8))).toEqual([0, 1, 2, 3, 4, 5, 6, 0])
    expect(() => learner.setExpertParams(1, own)).toThrow(expect.objectContaining({ name: 'FederationError', message: 'expert 1 is this site\'s own expert; it is trained here, not installed' }))
    expect(() => learner.setExpertParams(4, other)).toThrow(expect.objectContaining({ name: 'FederationError', message: expect.stringContaining('expert 4 takes only expert.4.* tensors') }))
    expect(() => learner.setExpertParams(5, other)).toThrow(expect.objectContaining({ name: 'FederationError', message: 'expert 5 is not a slot of this MoE (0..4)' }))
    expect(() => createMoeLearner({ spec: spec(), expert: 5, data: createBatchSource(sites[1]!, { seed: 1 }) }, { logger })).toThrow(expect.objectContaining({ name: 'FederationError' }))
  })
})

describe('routing releases', () => {
  let dir: string
  let store: SiteStore
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fm-fed-'))
    store = await openSiteStore(join(dir, 'db'))
  })
  afterEach(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  // Small enough to run in a test: 8 PCA components, 1 sign bit.
  const cfg: RoutingConfig = { ...DP_ROUTING, components: 8, cellBits: 1, minCount: 20 }

  it('charges each release to the ledger before returning it; over budget it is refused and nothing is returned or recorded', async () => {
    const ledger = createPrivacyLedger(store, { epsilonBudget: 8, delta: 1e-5 })
    const random = createSeededRandom('site-0')
    const s = sites[0]!
    const global = await releaseSiteGlobal({ rows: s.x, n: s.n, dim: 784 }, cfg, { random, ledger }, { label: 'fed' })
    expect(global.dim).toBe(784)
    expect(Math.abs(global.count - s.n)).toBeLessThan(50) // noisy count: std z ~ 7 at this budget
    const projection = sharedProjection([global], cfg, 'fed')
    const release = await releaseSiteComponents({ expert: 0, rows: s.x, labels: s.y, n: s.n }, projection, cfg, { random, ledger }, { label: 'fed' })
    expect(release.components.map(c => `${c.label}/${c.cell}`)).toEqual(['0/0', '0/1', '1/0', '1/1'])
    const entries = await ledger.entries()
    expect(entries.map(e => [e.kind, e.label])).toEqual([['routing', 'fed/release-1 global moments'], ['routing', 'fed/release-2 components']])
    // Both releases together spend the config's zCDP budget exactly.
    const rho = releaseRho(cfg)
    expect(rho.global + rho.components).toBeCloseTo(rhoForEpsilon(8, 1e-5), 12)
    expect(entries[1]!.spentAfter.epsilon!).toBeLessThanOrEqual(8)
    expect(entries[1]!.spentAfter.epsilon!).toBeGreaterThan(6)

    // Releasing the components again would exceed eps = 8: refused before any work, with the ledger's named error.
    await expect(releaseSiteComponents({ expert: 0, rows: s.x, labels: s.y, n: s.n }, projection, cfg, { random, ledger }, { label: 'again' }))
      .rejects.toMatchObject({ name: 'PrivacyBudgetExceededError', message: expect.stringContaining("release 'again/release-2 components' (routing) refused: eps would reach") })
    expect((await ledger.entries()).length).toBe(2)

    // Exact statistics have no DP guarantee: they cannot be charged.
    await expect(releaseSiteGlobal({ rows: s.x, n: s.n, dim: 784 }, EXACT_ROUTING, { random, ledger }))
      .rejects.toMatchObject({ name: 'FederationError', message: expect.stringContaining('exact routing statistics carry no DP guarantee') })
  })

  it('members build the same projection and router from the wire form; gates route each site\'s digits to it, opt-out gives exactly 0', async () => {
    const exact: RoutingConfig = { ...EXACT_ROUTING, components: 8, cellBits: 1, minCount: 20 }
    const globals = await Promise.all(sites.map((s, i) => releaseSiteGlobal({ rows: s.x, n: s.n, dim: 784 }, exact, { random: createSeededRandom(i), ledger: null })))
    // Release 1 travels as JSON and is validated on receipt.
    const received = globals.map(g => decodeGlobalMoments(JSON.parse(JSON.stringify(encodeGlobalMoments(g)))))
    const p1 = sharedProjection(received, exact, 'fed')
    const p2 = sharedProjection(globals, exact, 'fed')
    expect(Array.from(p1.basis)).toEqual(Array.from(p2.basis))
    const wire = await Promise.all(sites.map(async (s, i) => JSON.parse(JSON.stringify(encodeSiteRelease(await releaseSiteComponents({ expert: i, rows: s.x, labels: s.y, n: s.n }, p1, exact, { random: createSeededRandom(i), ledger: null }))))))
    const router = buildMemberRouter(p1, wire, 5, exact)
    const test = await loadMnist({ split: 'test', limit: 500 })
    const gates = densityGates(router, test.x, test.n)
    let hit = 0
    for (let i = 0; i < test.n; i++) {
      const row = Array.from(gates.subarray(i * 5, i * 5 + 5))
      expect(row.reduce((a, b) => a + b)).toBeCloseTo(1, 6)
      expect(row.filter(g => g > 0).length).toBeLessThanOrEqual(2)
      if (row.indexOf(Math.max(...row)) === Math.floor(test.y[i]! / 2)) hit++
    }
    // 8 components from ~600 rows per site: measured 0.87 of 500 test images.
    expect(hit / test.n).toBeGreaterThan(0.8)
    const masked = densityGates(router, test.x, test.n, { optOut: new Set([3]) })
    for (let i = 0; i < test.n; i++) expect(masked[i * 5 + 3]).toBe(0)

    expect(() => buildMemberRouter(p1, [{ ...wire[0], expert: -1 }], 5, exact)).toThrow(expect.objectContaining({ name: 'RoutingInputError' }))
    expect(() => decodeGlobalMoments({ dim: 3, count: 1, sum: [0, 0], outer: [] })).toThrow(expect.objectContaining({ name: 'FederationError', message: 'global moments of dim 3 need 3 sums and 6 packed outer products' }))
    expect(() => decodeGlobalMoments({ dim: 1e6 })).toThrow(expect.objectContaining({ name: 'FederationError' }))
  })
})
