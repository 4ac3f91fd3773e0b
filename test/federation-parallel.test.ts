import { beforeAll, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import { loadMnist } from '../node/data/mnist.ts'
import type { LabeledData } from '../node/data/types.ts'
import { runDenseFedAvg } from '../node/federation/baselines.ts'
import { runBaselinesInWorker } from '../node/federation/parallel.ts'
import { labelGroups } from '../node/federation/recipe.ts'
import type { RoundRecord } from '../node/federation/run-common.ts'
import { selectBackend } from '../node/model/backend.ts'

let train: LabeledData
let test: LabeledData
beforeAll(async () => {
  await selectBackend('wasm', createSilentLogger())
  ;[train, test] = await Promise.all([loadMnist({ split: 'train', limit: 1500 }), loadMnist({ split: 'test', limit: 300 })])
})

describe('baselines in a worker thread', () => {
  it('give bit-identical results to the same runner on the calling thread, with records streamed back', async () => {
    const options = { train, test, groups: labelGroups(5, 2), rounds: 2, evalRounds: [1, 2], seed: 5 }
    const here = await runDenseFedAvg(options)
    const streamed: Array<[string, RoundRecord]> = []
    const there = await runBaselinesInWorker({ ...options, onRecord: (m, r) => { streamed.push([m, r]) } }, ['fedavg-dense'])
    expect(there.backend).toBe('wasm')
    const { seconds: _a, ...a } = here
    const { seconds: _b, ...b } = there['fedavg-dense']!
    expect(b).toEqual(a)
    expect(streamed).toEqual(here.rounds.map(r => ['fedavg-dense', r]))
  })

  it('reports a bad job with the runner\'s named error', async () => {
    await expect(runBaselinesInWorker({ train, test, groups: labelGroups(5, 2), rounds: 0 }, ['centralized']))
      .rejects.toMatchObject({ name: 'FederationError', message: 'rounds must be a positive integer, got 0' })
  })
})
