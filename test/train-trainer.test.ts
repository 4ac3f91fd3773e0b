import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { createBatchSource } from '../node/data/batches.ts'
import type { LabeledData } from '../node/data/types.ts'
import { selectBackend } from '../node/model/backend.ts'
import { createModel } from '../node/model/create.ts'
import { groupOf, initParams, paramDefs } from '../node/model/params.ts'
import { referenceMoeForward } from '../node/model/reference.ts'
import { mlp2nnSpec, parseMoeSpec, type MoeSpec } from '../node/model/spec.ts'
import { createOptimizer } from '../node/train/optimizers.ts'
import { createTrainer, evaluate, type TrainProgress } from '../node/train/trainer.ts'

const logger = createSilentLogger()
const spec: MoeSpec = parseMoeSpec({ inputDim: 10, width: 12, expertHidden: 16, experts: 4, topK: 2, classes: 4, seed: 2, routerInitScale: 3 })

/** Four Gaussian clusters in 10 dimensions, one per class: learnable to ~100%. */
function clusters (n: number, seed: number): LabeledData {
  const c0 = createSeededRandom('centers')
  const centers = Array.from({ length: 4 }, () => Array.from({ length: 10 }, () => 2 * c0.normal()))
  const r = createSeededRandom(seed)
  const x = new Float32Array(n * 10)
  const y = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const c = r.int(4)
    y[i] = c
    for (let j = 0; j < 10; j++) x[i * 10 + j] = centers[c]![j]! + 0.5 * r.normal()
  }
  return { x, y, n, dim: 10, numClasses: 4 }
}

const data = clusters(512, 1)
const held = clusters(256, 1 + 1000)

function distance (a: Map<string, { data: Float32Array }>, b: Map<string, { data: Float32Array }>, prefix = ''): number {
  let s = 0
  for (const [k, t] of a) if (k.startsWith(prefix)) t.data.forEach((v, i) => { s += (v - b.get(k)!.data[i]!) ** 2 })
  return Math.sqrt(s)
}

beforeAll(async () => {
  await selectBackend('wasm', logger)
})

describe('optimizers', () => {
  const run = (config: unknown, grads: number[][]): number[] => {
    const opt = createOptimizer(config)
    const v = tf.variable(tf.tensor1d([1, -2, 0.5]))
    for (const g of grads) {
      const gt = tf.tensor1d(g)
      opt.apply([{ name: 'p', variable: v, grad: gt }])
      gt.dispose()
    }
    const out = Array.from(v.dataSync())
    v.dispose()
    opt.dispose()
    return out
  }
  const g1 = [0.5, -1, 2]
  const g2 = [-0.25, 3, 0.1]

  it('SGD and momentum follow their update rules', () => {
    expect(run({ kind: 'sgd', lr: 0.1 }, [g1])).toEqual([1 - 0.05, -2 + 0.1, 0.5 - 0.2].map(Math.fround))
    const p = [1, -2, 0.5]
    // buf1 = g1; buf2 = 0.9 g1 + g2.
    const want = p.map((v, i) => v - 0.1 * g1[i]! - 0.1 * (0.9 * g1[i]! + g2[i]!))
    run({ kind: 'momentum', lr: 0.1 }, [g1, g2]).forEach((v, i) => { expect(v).toBeCloseTo(want[i]!, 6) })
  })

  it('Adam matches a float64 transcription of Kingma & Ba', () => {
    const [b1, b2, eps, lr] = [0.9, 0.999, 1e-8, 0.01]
    const p = [1, -2, 0.5]
    const m = [0, 0, 0]
    const v = [0, 0, 0]
    ;[g1, g2].forEach((g, t0) => {
      const t = t0 + 1
      for (let i = 0; i < 3; i++) {
        m[i] = b1 * m[i]! + (1 - b1) * g[i]!
        v[i] = b2 * v[i]! + (1 - b2) * g[i]! ** 2
        p[i]! -= lr * (m[i]! / (1 - b1 ** t)) / (Math.sqrt(v[i]! / (1 - b2 ** t)) + eps)
      }
    })
    run({ kind: 'adam', lr }, [g1, g2]).forEach((x, i) => { expect(Math.abs(x - p[i]!)).toBeLessThan(1e-6) })
  })

  it('refuses a bad configuration with a named error', () => {
    expect(() => createOptimizer({ kind: 'adam', lr: -1 })).toThrowError(expect.objectContaining({ name: 'TrainerError', message: expect.stringMatching(/^invalid optimizer: lr: /) }))
    expect(() => createOptimizer({ kind: 'rmsprop', lr: 1 })).toThrow(/invalid optimizer/)
  })
})

describe('trainer', () => {
  it('learns a separable problem with every optimizer, for the MoE and both baselines', async () => {
    const models = [
      { m: createModel(spec), opt: { kind: 'adam', lr: 0.01 } },
      { m: createModel(spec), opt: { kind: 'momentum', lr: 0.05 } },
      { m: createModel({ kind: 'dense', inputDim: 10, width: 12, hidden: 24, classes: 4, seed: 1 }), opt: { kind: 'sgd', lr: 0.1 } },
      { m: createModel({ kind: 'mlp', inputDim: 10, hidden: [16, 16], classes: 4, seed: 1 }), opt: { kind: 'sgd', lr: 0.1 } }
    ] as const
    for (const { m, opt } of models) {
      const before = evaluate(m, held)
      const t = createTrainer({ model: m, optimizer: opt }, { logger })
      const r = await t.steps(createBatchSource(data, { seed: 3 }), 60, 32)
      expect(r.samples).toBe(60 * 32)
      const after = evaluate(m, held)
      expect(after.accuracy).toBeGreaterThanOrEqual(0.97)
      expect(after.loss).toBeLessThan(before.loss / 4)
      t.dispose()
      m.dispose()
    }
  })

  it('keeps optimizer state across calls: 2 x 5 steps equal 10 steps bit for bit', async () => {
    const finals = []
    for (const split of [[10], [5, 5]]) {
      const m = createModel(spec)
      const t = createTrainer({ model: m, optimizer: { kind: 'adam', lr: 0.01 } }, { logger })
      const src = createBatchSource(data, { seed: 4 })
      for (const s of split) await t.steps(src, s, 16)
      expect(t.totalSteps).toBe(10)
      finals.push(m.getParams())
      t.dispose()
      m.dispose()
    }
    for (const [name, t] of finals[0]!) expect(finals[1]!.get(name)!.data).toEqual(t.data)
  })

  it('never moves frozen groups, and fixed routing trains only the chosen expert', async () => {
    const m = createModel(spec)
    const start = m.getParams()
    const others = ['shared', 'expert:0', 'expert:1', 'expert:3'] as const
    const t = createTrainer({ model: m, optimizer: { kind: 'sgd', lr: 0.1 }, frozen: others, routing: { fixedExpert: 2 } }, { logger })
    const r = await t.steps(createBatchSource(data, { seed: 5 }), 8, 16)
    expect(r.routed).toEqual([0, 0, 8 * 16, 0])
    expect(r.auxLoss).toBeNull()
    const end = m.getParams()
    for (const [name, tensor] of end) {
      if (name.startsWith('expert.2.')) expect(tensor.data).not.toEqual(start.get(name)!.data)
      else expect(tensor.data).toEqual(start.get(name)!.data)
    }
    t.dispose()
    m.dispose()
  })

  it('adds the FedProx pull towards the anchor, and drops it when the anchor is cleared', async () => {
    const drift = async (mu: number, anchored: boolean, cleared = false): Promise<number> => {
      const m = createModel(spec)
      const start = m.getParams()
      const t = createTrainer({ model: m, optimizer: { kind: 'sgd', lr: 0.05 }, proxMu: mu }, { logger })
      if (anchored) t.setProxAnchor(start)
      if (cleared) t.setProxAnchor(null)
      await t.steps(createBatchSource(data, { seed: 6 }), 30, 16)
      const d = distance(m.getParams(), start)
      t.dispose()
      m.dispose()
      return d
    }
    const free = await drift(0, false)
    const prox = await drift(5, true)
    expect(prox).toBeLessThan(free * 0.7)
    expect(await drift(5, true, true)).toBe(free)
    expect(await drift(5, false)).toBe(free)
  })

  it('reports progress, and stops at the step where its signal aborts', async () => {
    const m = createModel(spec)
    const seen: TrainProgress[] = []
    const ac = new AbortController()
    const t = createTrainer({ model: m, optimizer: { kind: 'sgd', lr: 0.1 } }, { logger, onProgress: (p) => { seen.push(p); if (p.step === 3) ac.abort() } })
    await expect(t.steps(createBatchSource(data, { seed: 7 }), 50, 8, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' })
    expect(seen.map(p => [p.step, p.steps, p.totalSteps, p.samples])).toEqual([[1, 50, 1, 8], [2, 50, 2, 16], [3, 50, 3, 24]])
    expect(t.totalSteps).toBe(3)
    t.dispose()
    m.dispose()
  })

  it('refuses bad set-ups with named errors', () => {
    const m = createModel(spec)
    const opt = { kind: 'sgd', lr: 0.1 } as const
    expect(() => createTrainer({ model: m, optimizer: opt, frozen: ['expert:9'] }, { logger })).toThrowError(expect.objectContaining({ name: 'TrainerError', message: 'cannot freeze group expert:9: the model has expert:0, expert:1, expert:2, expert:3, shared' }))
    expect(() => createTrainer({ model: m, optimizer: opt, routing: { fixedExpert: 4 } }, { logger })).toThrow('fixedExpert 4 is not an expert of this model (0..3)')
    expect(() => createTrainer({ model: m, optimizer: opt, frozen: paramDefs(spec).map(d => groupOf(d.name)) }, { logger })).toThrow('every parameter group is frozen')
    const bad = { ...data, y: Int32Array.from(data.y, v => v + 1) }
    expect(() => evaluate(m, bad)).toThrowError(expect.objectContaining({ name: 'ModelInputError', message: expect.stringMatching(/^label 4 of row \d+ is outside \[0, 4\)$/) }))
    m.dispose()
  })
})

describe('evaluate', () => {
  it('computes loss, accuracy, per-class accuracy and the routing histogram exactly', () => {
    const m = createModel(spec)
    m.setParams(initParams({ ...spec, seed: 40 }))
    // Class 3 is absent: its accuracy is NaN.
    const d: LabeledData = { ...held, y: Int32Array.from(held.y, v => v % 3) }
    const ref = referenceMoeForward(spec, m.getParams(), d.x, d.n)
    let loss = 0
    let correct = 0
    const hits = [0, 0, 0]
    const counts = [0, 0, 0]
    const hist = [0, 0, 0, 0]
    for (let i = 0; i < d.n; i++) {
      const row = Array.from(ref.probs.subarray(i * 4, i * 4 + 4))
      const best = row.indexOf(Math.max(...row))
      const label = d.y[i]!
      loss -= Math.log(row[label]!)
      counts[label]!++
      if (best === label) { correct++; hits[label]!++ }
      for (let e = 0; e < 4; e++) if (ref.gates[i * 4 + e] !== 0) hist[e]!++
    }
    const ev = evaluate(m, d)
    expect(ev.n).toBe(d.n)
    expect(ev.loss).toBeCloseTo(loss / d.n, 5)
    expect(ev.accuracy).toBe(correct / d.n)
    expect(ev.perClassAccuracy.slice(0, 3)).toEqual(hits.map((h, k) => h / counts[k]!))
    expect(ev.perClassAccuracy[3]).toBeNaN()
    expect(ev.routingHistogram).toEqual(hist)
    expect(hist.reduce((a, b) => a + b)).toBe(2 * d.n)
    expect(hist.filter(c => c > 0).length).toBeGreaterThan(1)
    // External gates: the histogram counts nonzero gates.
    const gates = new Float32Array(d.n * 4)
    for (let i = 0; i < d.n; i++) gates[i * 4 + (i % 2)] = 1
    expect(evaluate(m, d, { gates }).routingHistogram).toEqual([Math.ceil(d.n / 2), Math.floor(d.n / 2), 0, 0])
    expect(evaluate(createModel(mlp2nnSpec()), { x: new Float32Array(784 * 3), y: new Int32Array(3), n: 3, dim: 784, numClasses: 10 }).routingHistogram).toBeUndefined()
    m.dispose()
  })
})

describe('memory', () => {
  it('holds the tfjs tensor count flat over 500 training steps (Adam, FedProx, learned top-2 routing) and evaluations', async () => {
    const base = tf.memory().numTensors
    const m = createModel(spec)
    const t = createTrainer({ model: m, optimizer: { kind: 'adam', lr: 0.005 }, proxMu: 0.1 }, { logger })
    t.setProxAnchor(m.getParams())
    const src = createBatchSource(data, { seed: 8 })
    // Warm-up: optimizer slots appear the first time each expert gets rows.
    await t.steps(src, 20, 16)
    evaluate(m, held)
    const before = tf.memory().numTensors
    const r = await t.steps(src, 500, 16)
    evaluate(m, held)
    m.predict(held.x)
    m.features(held.x)
    expect(r.steps).toBe(500)
    expect(tf.memory().numTensors).toBe(before)
    t.dispose()
    m.dispose()
    // Model variables, optimizer slots and the anchor are all released.
    expect(tf.memory().numTensors).toBe(base)
  })
})
