import { beforeAll, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import { EXACT_ROUTING, type RoutingConfig } from '../coordinator/routing/config.ts'
import { loadMnist } from '../node/data/mnist.ts'
import type { LabeledData } from '../node/data/types.ts'
import { runCentralized, runDenseFedAvg, runLocalOnly } from '../node/federation/baselines.ts'
import { runMoeFederation } from '../node/federation/inprocess.ts'
import { labelGroups } from '../node/federation/recipe.ts'
import { selectBackend } from '../node/model/backend.ts'

// Trunk + head of the d = 64 recipe, float32, plus the 16-byte payload header of coordinator/compression/wire.ts.
const MOE_UPDATE = 16 + 4 * (784 * 64 + 64 + 64 * 10 + 10)
// denseSpecFor(top-2 MoE of 5 experts, f = 64): FFN hidden 131.
const DENSE_UPDATE = 16 + 4 * (784 * 64 + 64 + 64 * 131 + 131 + 131 * 64 + 64 + 64 * 10 + 10)
const RELEASE_1 = 4 * (1 + 784 + 784 * 785 / 2)

let train: LabeledData
let test: LabeledData
beforeAll(async () => {
  await selectBackend('wasm', createSilentLogger())
  ;[train, test] = await Promise.all([loadMnist({ split: 'train', limit: 5000 }), loadMnist({ split: 'test', limit: 2000 })])
})

describe('the in-process federation', () => {
  // A cheap router for the small runs: 8 PCA components, 1 sign bit.
  const small: RoutingConfig = { ...EXACT_ROUTING, components: 8, cellBits: 1, minCount: 20 }
  const tiny = (): Parameters<typeof runMoeFederation>[0] => ({
    train: { ...train, n: 1500, x: train.x.subarray(0, 1500 * 784), y: train.y.subarray(0, 1500) },
    test: { ...test, n: 300, x: test.x.subarray(0, 300 * 784), y: test.y.subarray(0, 300) },
    groups: labelGroups(5, 2),
    rounds: 3,
    evalRounds: [1, 3],
    seed: 7,
    routers: { small }
  })

  it('is deterministic from its seed and counts bytes exactly', async () => {
    const a = await runMoeFederation(tiny())
    const b = await runMoeFederation(tiny())
    expect(a.rounds).toEqual(b.rounds)
    expect(a.final).toEqual(b.final)
    expect(a.byRouter.small!.final.routingAccuracy).toBe(b.byRouter.small!.final.routingAccuracy)
    const other = await runMoeFederation({ ...tiny(), seed: 8 })
    expect(other.final.accuracy).not.toBe(a.final.accuracy)

    // Release 2 here: 2 labels x 2 cells x (count, 8 sums, 36 packed products) as float32.
    const release2 = 4 * 4 * (1 + 8 + 36)
    expect(a.bytes.updatePerRound).toBe(MOE_UPDATE)
    expect(a.bytes.release1).toBe(RELEASE_1)
    expect(a.bytes.release2).toBe(release2)
    expect(a.bytes.oneTime).toBe(RELEASE_1 + release2 + a.bytes.expert)
    expect(a.bytes.expert).toBeGreaterThan(4 * (64 * 64 * 2 + 64 + 64))
    expect(a.bytes.expert).toBeLessThan(4 * (64 * 64 * 2 + 64 + 64) + 1024) // plus the safetensors header
    expect(a.rounds.map(r => [r.round, r.bytesSent])).toEqual([[1, a.bytes.oneTime + MOE_UPDATE], [3, a.bytes.oneTime + 3 * MOE_UPDATE]])

    const dense = await runDenseFedAvg(tiny())
    expect(dense.hidden).toBe(131)
    expect(dense.updatePerRound).toBe(DENSE_UPDATE)
    expect(dense.rounds.map(r => [r.round, r.bytesSent])).toEqual([[1, DENSE_UPDATE], [3, 3 * DENSE_UPDATE]])
    const central = await runCentralized(tiny())
    expect(central.rounds.map(r => r.bytesSent)).toEqual([0, 0])
    expect(central.routingHistogram.reduce((x, y) => x + y)).toBe(2 * 300)

    await expect(runMoeFederation({ ...tiny(), rounds: 0 })).rejects.toMatchObject({ name: 'FederationError', message: 'rounds must be a positive integer, got 0' })
    await expect(runDenseFedAvg({ ...tiny(), evalRounds: [4] })).rejects.toMatchObject({ name: 'FederationError', message: 'evaluation round 4 is outside 0..3' })
  })

  it('5 sites x 2 digits: the routed MoE is far above each site alone; opting out an expert removes its digits only', async () => {
    const base = { train, test, groups: labelGroups(5, 2), rounds: 10, seed: 0 }
    const moe = await runMoeFederation({ ...base, routers: { exact: EXACT_ROUTING }, optOut: true })
    const local = await runLocalOnly(base)
    const exact = moe.byRouter.exact!
    // Measured (5,000 training rows, 2,000 test images): MoE 0.921, routing 0.946, oracle 0.970; local-only mean 0.195, max 0.207.
    expect(moe.final.accuracy).toBeGreaterThan(0.88)
    expect(exact.final.routingAccuracy).toBeGreaterThan(0.92)
    expect(moe.oracle.accuracy).toBeGreaterThan(moe.final.accuracy)
    expect(local.final.accuracy).toBeLessThan(0.25)
    expect(local.maxAccuracy).toBeLessThan(0.25)
    expect(local.perSite).toHaveLength(5)
    for (const o of exact.optOut) {
      // Measured: each site's digits fall from 0.88-0.97 to exactly 0; the other digits (together) move by at most 1.8 points.
      expect(o.ownBefore).toBeGreaterThan(0.85)
      expect(o.ownAfter).toBeLessThan(0.01)
      expect(Math.abs(o.othersChangePoints)).toBeLessThan(3)
    }
  })
})
