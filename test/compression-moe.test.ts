/**
 * Compression inside the in-process MoE federation: the sites train on the
 * aggregate of what the receiver decodes (lossy when compressed), not on the
 * exact deltas with only the byte count changed, and top-k's error feedback
 * carries each site's residual into its next round.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import type { CompressionConfigInput } from '../coordinator/compression/combined.ts'
import { EXACT_ROUTING, type RoutingConfig } from '../coordinator/routing/config.ts'
import { flattenTensors } from '../protocols/tensors.ts'
import { loadMnist } from '../node/data/mnist.ts'
import type { LabeledData } from '../node/data/types.ts'
import { runMoeFederation, type MoeRunResult } from '../node/federation/inprocess.ts'
import { exchangedPart, labelGroups, recipeInitialParams, recipeSpec } from '../node/federation/recipe.ts'
import { selectBackend } from '../node/model/backend.ts'

const N = 784 * 64 + 64 + 64 * 10 + 10 // trunk + head: 50,890 values
const K = Math.ceil(0.01 * N) // 509 values per site and round at 1 %
const SITES = 5
const SEED = 7

let train: LabeledData
let test: LabeledData
let initial: Float32Array
beforeAll(async () => {
  await selectBackend('wasm', createSilentLogger())
  const [tr, te] = await Promise.all([loadMnist({ split: 'train', limit: 1500 }), loadMnist({ split: 'test', limit: 300 })])
  train = tr
  test = te
  initial = flattenTensors(exchangedPart(recipeInitialParams(recipeSpec({ inputDim: 784, classes: 10, experts: SITES, seed: SEED }))))
})

// A cheap router for small runs: 8 PCA components, 1 sign bit.
const small: RoutingConfig = { ...EXACT_ROUTING, components: 8, cellBits: 1, minCount: 20 }
const run = async (rounds: number, compression: CompressionConfigInput): Promise<MoeRunResult> =>
  await runMoeFederation({ train, test, groups: labelGroups(SITES, 2), rounds, seed: SEED, routers: { small }, compression })

const flat = (r: MoeRunResult): Float32Array => flattenTensors(r.shared)
const changed = (a: Float32Array, b: Float32Array): number => a.reduce((n, v, i) => n + (v !== b[i] ? 1 : 0), 0)
const TOPK = { kind: 'topk-int8', fraction: 0.01, blockSize: 256 } as const

describe('compression in runMoeFederation', () => {
  it('aggregates the decoded updates: one top-k round moves at most sites x k coordinates, int8 moves them off the exact ones', async () => {
    const none = await run(1, { kind: 'none' })
    const int8 = await run(1, { kind: 'int8', blockSize: 256 })
    const topk = await run(1, TOPK)
    expect(initial.length).toBe(N)
    for (const r of [none, int8, topk]) expect(flat(r).length).toBe(N)

    // Exact FedAvg of exact deltas moves every coordinate with a gradient (all but the trunk rows of always-blank pixels).
    expect(changed(flat(none), initial)).toBeGreaterThan(30_000)
    // The union of five top-k supports; int8 may round a kept value to 0, so at least one site's worth is an underestimate only by those.
    const moved = changed(flat(topk), initial)
    expect(moved).toBeLessThanOrEqual(SITES * K)
    expect(moved).toBeGreaterThan(K)

    // int8 moves nearly the same coordinates by slightly different amounts.
    const a = flat(none)
    const b = flat(int8)
    expect(changed(a, b)).toBeGreaterThan(10_000)
    let diff = 0
    let step = 0
    for (let i = 0; i < N; i++) { diff += (a[i]! - b[i]!) ** 2; step += (a[i]! - initial[i]!) ** 2 }
    // Rounding error per value is at most half a block's scale: small beside the step itself.
    expect(Math.sqrt(diff / step)).toBeLessThan(0.05)

    // Bytes per site per round, exactly as the wire layout gives them.
    expect(none.bytes.updateMean).toBe(16 + 4 * N)
    expect(int8.bytes.updateMean).toBe(16 + 4 * Math.ceil(N / 256) + N)
    expect(int8.bytes.updatePerRound).toBe(int8.bytes.updateMean)
    // Header, 2 block scales, k int8 values, k varint gaps of 1 to 3 bytes each.
    expect(topk.bytes.updateMean).toBeGreaterThanOrEqual(16 + 8 + 2 * K)
    expect(topk.bytes.updatePerRound).toBeLessThanOrEqual(16 + 8 + 4 * K)
    expect(topk.bytes.updatePerRound).toBeGreaterThanOrEqual(topk.bytes.updateMean)
  })

  it('carries each site\'s residual into the next round (error feedback): no effect in round 1, a different model from round 2', async () => {
    const ef1 = await run(1, TOPK)
    const plain1 = await run(1, { ...TOPK, errorFeedback: false })
    expect([...flat(ef1)]).toEqual([...flat(plain1)])

    const ef2 = await run(2, TOPK)
    const plain2 = await run(2, { ...TOPK, errorFeedback: false })
    const a = flat(ef2)
    const b = flat(plain2)
    expect(changed(a, b)).toBeGreaterThan(K)
    // Without feedback, round 2 again moves at most sites x k new coordinates; with it, the same bound holds per round, so two rounds stay within 2 sites x k.
    expect(changed(a, initial)).toBeLessThanOrEqual(2 * SITES * K)
    expect(changed(b, initial)).toBeLessThanOrEqual(2 * SITES * K)
  })
})
