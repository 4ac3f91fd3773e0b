import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { partitionIid } from '../coordinator/partition.ts'
import { createStrategy, type StrategyConfigInput } from '../coordinator/strategies/registry.ts'
import type { JsonValue } from '../coordinator/strategies/types.ts'
import { loadMnist } from '../node/data/mnist.ts'
import { accuracy, localDelta, paramCount } from './support/softmax.ts'

// Five sites with IID shares of 5,000 MNIST training images train a softmax
// regression; site-5 is Byzantine and sends its honest update sign-flipped
// and scaled x10. Under FedAvg the mean then points uphill; the robust rules
// discard or outvote it. Seeded: every figure below is exact for this seed.
const SITES = 5
const ROUNDS = 20
const LOCAL = { steps: 5, batch: 32, lr: 0.5 }

describe('poisoning: one of five sites sends sign-flipped updates scaled x10', () => {
  it('median, trimmed mean and Krum hold their accuracy; FedAvg collapses', async () => {
    const train = await loadMnist({ split: 'train', limit: 5000 })
    const test = await loadMnist({ split: 'test', limit: 2000 })
    const { indices } = partitionIid(train.n, SITES, createSeededRandom('poison-split'))
    const dim = paramCount(train.dim, train.numClasses)

    const runWith = (config: StrategyConfigInput, attack: boolean): number => {
      const strategy = createStrategy(config)
      let global: Float32Array = new Float32Array(dim)
      let state: JsonValue = null
      for (let r = 1; r <= ROUNDS; r++) {
        const updates = indices.map((rows, s) => {
          const delta = localDelta(global, train, rows, { ...LOCAL, seed: `site-${s + 1}/round-${r}` })
          if (attack && s === SITES - 1) for (let i = 0; i < delta.length; i++) delta[i] = -10 * delta[i]!
          return { site: `site-${s + 1}`, delta, samples: rows.length }
        })
        const out = strategy.aggregate(updates, global, state)
        global = out.next
        state = out.state
      }
      return accuracy(global, test)
    }

    const clean = runWith({ kind: 'fedavg' }, false)
    const acc = {
      fedavg: runWith({ kind: 'fedavg' }, true),
      median: runWith({ kind: 'median' }, true),
      trimmed: runWith({ kind: 'trimmed-mean', beta: 0.2 }, true),
      krum: runWith({ kind: 'krum', f: 1 }, true)
    }
    console.log(`poisoning, accuracy on 2,000 test images after ${ROUNDS} rounds: clean FedAvg ${clean}, attacked: ${JSON.stringify(acc)}`)
    expect(clean).toBeGreaterThan(0.85)
    // Robust rules stay within 5 points of the clean run (Krum keeps one site's
    // update per round, so it learns from a fifth of the data); FedAvg collapses.
    for (const a of [acc.median, acc.trimmed, acc.krum]) expect(a).toBeGreaterThan(clean - 0.05)
    expect(acc.fedavg).toBeLessThan(0.5)
  })
})
