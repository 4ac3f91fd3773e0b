import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { createBatchSource } from '../node/data/batches.ts'
import type { LabeledData } from '../node/data/types.ts'
import { selectBackend } from '../node/model/backend.ts'
import { createModel } from '../node/model/create.ts'
import { initParams } from '../node/model/params.ts'
import type { MoeSpecInput } from '../node/model/spec.ts'
import { createTrainer, evaluate, type TrainProgress } from '../node/train/trainer.ts'
import { createWorkerTrainer, shareLabeledData, type WorkerTrainer } from '../node/train/worker.ts'

const logger = createSilentLogger()
const spec: MoeSpecInput = { inputDim: 16, width: 12, expertHidden: 16, experts: 4, topK: 2, classes: 3, seed: 9, routerInitScale: 3 }

function blobs (n: number): LabeledData {
  const r = createSeededRandom('worker-data')
  const x = new Float32Array(n * 16)
  const y = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    y[i] = r.int(3)
    for (let j = 0; j < 16; j++) x[i * 16 + j] = (j % 3 === y[i] ? 1.5 : 0) + r.normal()
  }
  return { x, y, n, dim: 16, numClasses: 3 }
}

const data = shareLabeledData(blobs(400))
const opt = { kind: 'adam', lr: 0.01 } as const
const workers: WorkerTrainer[] = []

beforeAll(async () => {
  await selectBackend('wasm', logger)
})
afterAll(async () => {
  for (const w of workers) await w.stop()
})

describe('trainer in a worker thread', () => {
  it('trains on its own wasm backend and matches an in-thread trainer bit for bit', async () => {
    const seen: TrainProgress[] = []
    const w = createWorkerTrainer({ spec, optimizer: opt, data, batchSeed: 1 }, { logger, onProgress: (p) => { seen.push(p) } })
    workers.push(w)
    expect((await w.start()).name).toBe('wasm')
    expect((await w.start()).name).toBe('wasm') // idempotent
    const remote = [await w.steps(6, 16), await w.steps(4, 16)]
    expect(seen.map(p => p.totalSteps)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])

    const m = createModel(spec)
    const t = createTrainer({ model: m, optimizer: opt }, { logger })
    const src = createBatchSource(data, { seed: 1 })
    const local = [await t.steps(src, 6, 16), await t.steps(src, 4, 16)]
    expect(remote).toEqual(local)
    const params = await w.getParams()
    for (const [name, tensor] of m.getParams()) expect(params.get(name)!.data).toEqual(tensor.data)
    expect(await w.evaluate(data)).toEqual(evaluate(m, data))
    t.dispose()
    m.dispose()
  })

  it('runs two trainers at once, each with its own state', async () => {
    const a = createWorkerTrainer({ spec, optimizer: opt, data, batchSeed: 'a', routing: { fixedExpert: 0 }, frozen: ['shared'] }, { logger })
    const b = createWorkerTrainer({ spec, optimizer: { kind: 'sgd', lr: 0.1 }, data, batchSeed: 'b', indices: Int32Array.from({ length: 100 }, (_, i) => i) }, { logger })
    workers.push(a, b)
    await Promise.all([a.start(), b.start()])
    const [ra, rb] = await Promise.all([a.steps(20, 8), b.steps(20, 8)])
    expect(ra.routed).toEqual([160, 0, 0, 0])
    expect(rb.routed!.reduce((s, v) => s + v)).toBe(2 * 160)
    const pa = await a.getParams()
    expect(pa.get('shared.trunk.w')!.data).toEqual(initParams(createModel(spec).spec).get('shared.trunk.w')!.data)
    expect(pa.get('expert.0.w1')!.data).not.toEqual((await b.getParams()).get('expert.0.w1')!.data)
  })

  it('sets parameters and anchors, aborts between steps, and passes named errors back', async () => {
    const w = createWorkerTrainer({ spec, optimizer: { kind: 'sgd', lr: 0.1 }, data, batchSeed: 2, proxMu: 1 }, { logger })
    workers.push(w)
    await w.start()
    const other = initParams({ ...createModel(spec).spec, seed: 123 })
    await w.setParams(other, { only: ['expert:3'] })
    expect((await w.getParams()).get('expert.3.w2')!.data).toEqual(other.get('expert.3.w2')!.data)
    await w.setProxAnchor(other)
    await expect(w.setParams(new Map())).rejects.toMatchObject({ name: 'ParamMismatchError', message: "missing parameter 'expert.0.b1'" })

    const ac = new AbortController()
    let steps = 0
    const aborting = createWorkerTrainer({ spec, optimizer: opt, data, batchSeed: 3 }, { logger, onProgress: (p) => { steps = p.totalSteps; if (p.step === 2) ac.abort() } })
    workers.push(aborting)
    await aborting.start()
    await expect(aborting.steps(100_000, 8, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' })
    expect(steps).toBeLessThan(100)
    expect((await aborting.steps(1, 8)).steps).toBe(1) // still usable

    await aborting.stop()
    await aborting.stop()
    await expect(aborting.steps(1, 8)).rejects.toMatchObject({ name: 'TrainerError', message: 'worker trainer is not started' })
  })

  it('refuses a bad spec or optimizer in the calling thread', () => {
    expect(() => createWorkerTrainer({ spec: { ...spec, topK: 3 }, optimizer: opt, data, batchSeed: 1 }, { logger })).toThrowError(expect.objectContaining({ name: 'ModelSpecError' }))
    expect(() => createWorkerTrainer({ spec, optimizer: { kind: 'adam', lr: 0 }, data, batchSeed: 1 }, { logger })).toThrowError(expect.objectContaining({ name: 'TrainerError' }))
  })
})
