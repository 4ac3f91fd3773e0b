import { beforeAll, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import { createBatchSource } from '../node/data/batches.ts'
import { loadMnist } from '../node/data/mnist.ts'
import { selectBackend } from '../node/model/backend.ts'
import { createModel } from '../node/model/create.ts'
import { createTrainer, evaluate } from '../node/train/trainer.ts'

// A short version of `npm run bench -- train-mnist` (which reaches >= 97% on
// the full test set in a few minutes): enough steps to show the MoE learns
// real digits with its router spreading rows over several experts.
describe('the MoE on MNIST', () => {
  beforeAll(async () => {
    await selectBackend('wasm', createSilentLogger())
  })

  it('passes 90% on 2,000 test images after 400 Adam steps, routing to more than one expert', async () => {
    const [train, test] = await Promise.all([loadMnist({ split: 'train', limit: 20_000 }), loadMnist({ split: 'test', limit: 2000 })])
    const model = createModel({ inputDim: 784, width: 64, expertHidden: 64, experts: 4, topK: 2, classes: 10, seed: 1 })
    const trainer = createTrainer({ model, optimizer: { kind: 'adam', lr: 0.002 } }, { logger: createSilentLogger() })
    const before = evaluate(model, test)
    const r = await trainer.steps(createBatchSource(train, { seed: 1 }), 400, 64)
    const after = evaluate(model, test)
    expect(before.accuracy).toBeLessThan(0.3)
    expect(after.accuracy).toBeGreaterThanOrEqual(0.9)
    expect(Math.min(...after.perClassAccuracy)).toBeGreaterThan(0.75)
    expect(r.auxLoss).toBeLessThan(1.5) // 1 is perfect balance
    const hist = after.routingHistogram!
    expect(hist.reduce((a, b) => a + b)).toBe(2 * 2000)
    expect(hist.filter(c => c >= 200).length).toBeGreaterThan(1)
    trainer.dispose()
    model.dispose()
  })
})
