import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { createBatchSource } from '../node/data/batches.ts'
import { selectBackend } from '../node/model/backend.ts'
import { createModel } from '../node/model/create.ts'
import { affine, applyOneHot, applyOneHotT } from '../node/model/linear.ts'
import { gelu, GELU_A, GELU_C } from '../node/model/model.ts'
import { parseMoeSpec } from '../node/model/spec.ts'
import { createTrainer } from '../node/train/trainer.ts'

const logger = createSilentLogger()
const BACKENDS = ['wasm', 'cpu'] as const

afterAll(async () => { await selectBackend('wasm', logger) })

/** Row-major a (r x k) times b (k x c), in float64; small integers stay exact in float32. */
function mul (a: number[], b: number[], r: number, k: number, c: number): number[] {
  const out = new Array<number>(r * c).fill(0)
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) for (let t = 0; t < k; t++) out[i * c + j]! += a[i * k + t]! * b[t * c + j]!
  return out
}
function transpose (a: number[], r: number, c: number): number[] {
  return Array.from({ length: r * c }, (_, i) => a[(i % r) * c + Math.floor(i / r)]!)
}
const ints = (n: number, seed: number): number[] => { const r = createSeededRandom(seed); return Array.from({ length: n }, () => r.int(7) - 3) }
const values = (t: tf.Tensor): number[] => Array.from(t.dataSync())

describe('linear ops: exact values and gradients on both backends', () => {
  // loss = sum(y * R): dy = R, so every gradient is a known product.
  const [n, k, c] = [3, 4, 5]
  const x = ints(n * k, 1)
  const w = ints(k * c, 2)
  const b = ints(c, 3)
  const R = ints(n * c, 4)

  for (const backend of BACKENDS) {
    it(`affine: y = x w + b, dx = R w^T, dw = x^T R, db = column sums of R (${backend})`, async () => {
      await selectBackend(backend, logger)
      tf.tidy(() => {
        const [tx, tw, tb, tr] = [tf.tensor2d(x, [n, k]), tf.tensor2d(w, [k, c]), tf.tensor1d(b), tf.tensor2d(R, [n, c])]
        const y = affine(tx, tw, tb)
        expect(values(y)).toEqual(mul(x, w, n, k, c).map((v, i) => v + b[i % c]!))
        const [dx, dw, db] = tf.grads((xi, wi, bi) => affine(xi as tf.Tensor2D, wi as tf.Tensor2D, bi as tf.Tensor1D).mul(tr).sum())([tx, tw, tb])
        expect(values(dx!)).toEqual(mul(R, transpose(w, k, c), n, c, k))
        expect(values(dw!)).toEqual(mul(transpose(x, n, k), R, k, n, c))
        expect(values(db!)).toEqual(Array.from({ length: c }, (_, j) => R.filter((_, i) => i % c === j).reduce((s, v) => s + v, 0)))
        // Without the input gradient, x is no longer on the gradient's path at all; w and b still are.
        expect(() => tf.grads((xi) => affine(xi as tf.Tensor2D, tw, tb, false).mul(tr).sum())([tx])).toThrow(/Cannot compute gradient/)
        const [dw2, db2] = tf.grads((wi, bi) => affine(tx, wi as tf.Tensor2D, bi as tf.Tensor1D, false).mul(tr).sum())([tw, tb])
        expect(values(dw2!)).toEqual(values(dw!))
        expect(values(db2!)).toEqual(values(db!))
      })
    })

    it(`one-hot products: m v and m^T u, with gradients m^T R and m R (${backend})`, async () => {
      await selectBackend(backend, logger)
      // Slots 0..2 pick rows 2, 0, 2 of a 4-row v: a row may be picked twice, another never.
      const m = [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0]
      const v = ints(4 * 2, 5)
      const u = ints(3 * 2, 6)
      const r3 = ints(3 * 2, 7)
      const r4 = ints(4 * 2, 8)
      tf.tidy(() => {
        const s = { m: tf.tensor2d(m, [3, 4]), mT: tf.tensor2d(transpose(m, 3, 4), [4, 3]) }
        expect(values(applyOneHot(s, tf.tensor2d(v, [4, 2])))).toEqual([v[4], v[5], v[0], v[1], v[4], v[5]])
        const [dv] = tf.grads((vi) => applyOneHot(s, vi as tf.Tensor2D).mul(tf.tensor2d(r3, [3, 2])).sum())([tf.tensor2d(v, [4, 2])])
        expect(values(dv!)).toEqual(mul(transpose(m, 3, 4), r3, 4, 3, 2))
        expect(values(applyOneHotT(s, tf.tensor2d(u, [3, 2])))).toEqual(mul(transpose(m, 3, 4), u, 4, 3, 2))
        const [du] = tf.grads((ui) => applyOneHotT(s, ui as tf.Tensor2D).mul(tf.tensor2d(r4, [4, 2])).sum())([tf.tensor2d(u, [3, 2])])
        expect(values(du!)).toEqual(mul(m, r4, 3, 4, 2))
      })
    })
  }
})

describe('gelu with its written-out derivative', () => {
  const xs = [-9, -3.5, -1, -0.3, 0, 0.2, 0.7, 1.5, 4, 12]
  const f64 = (x: number): number => x / (1 + Math.exp(-GELU_C * (x + GELU_A * x ** 3)))
  for (const backend of BACKENDS) {
    it(`gives the plain op chain's values bit for bit and the derivative of the formula (${backend})`, async () => {
      await selectBackend(backend, logger)
      tf.tidy(() => {
        const x = tf.tensor1d(xs)
        const chain = x.mul(tf.sigmoid(x.add(x.mul(x).mul(x).mul(GELU_A)).mul(GELU_C)))
        expect(values(gelu(x))).toEqual(values(chain))
        const [dx] = tf.grads((t) => gelu(t).mul(tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).sum())([x])
        const h = 1e-6
        const want = xs.map((v, i) => (i + 1) * (f64(v + h) - f64(v - h)) / (2 * h))
        values(dx!).forEach((g, i) => { expect(Math.abs(g - want[i]!)).toBeLessThan(1e-5 * (i + 1)) })
      })
    })
  }
})

describe('a training step on the wasm fast path', () => {
  const spec = parseMoeSpec({ inputDim: 20, width: 16, expertHidden: 24, experts: 4, topK: 2, classes: 5, seed: 3, routerInitScale: 3 })
  const r = createSeededRandom(9)
  const n = 32
  const data = { x: Float32Array.from({ length: n * 20 }, () => r.normal()), y: Int32Array.from({ length: n }, () => r.int(5)), n, dim: 20, numClasses: 5 }

  /** Every BatchMatMul one Adam step runs on `backend`: its transpose flags and output shape. */
  async function matMulsOfOneStep (backend: 'wasm' | 'cpu'): Promise<Array<{ flags: boolean, out: number[] }>> {
    await selectBackend(backend, logger)
    const original = tf.getKernel('BatchMatMul', backend)!
    const seen: Array<{ flags: boolean, out: number[] }> = []
    tf.unregisterKernel('BatchMatMul', backend)
    tf.registerKernel({
      ...original,
      kernelFunc: (args) => {
        const attrs = args.attrs as { transposeA: boolean, transposeB: boolean }
        const out = original.kernelFunc(args) as tf.TensorInfo
        seen.push({ flags: attrs.transposeA || attrs.transposeB, out: [...out.shape] })
        return out
      }
    })
    const model = createModel(spec)
    const trainer = createTrainer({ model, optimizer: { kind: 'adam', lr: 0.01 } }, { logger })
    try {
      await trainer.steps(createBatchSource(data, { seed: 1 }), 1, n)
    } finally {
      tf.unregisterKernel('BatchMatMul', backend)
      tf.registerKernel(original)
      trainer.dispose()
      model.dispose()
    }
    return seen
  }

  it('runs every matrix product without transpose flags on wasm, and never the trunk input gradient', async () => {
    const wasm = await matMulsOfOneStep('wasm')
    // Forward: trunk, router, gather of rows and gates, 2 per expert, scatter, head; backward: more.
    expect(wasm.length).toBeGreaterThan(12)
    expect(wasm.filter(m => m.flags)).toEqual([])
    // The trunk's input gradient would be n x inputDim.
    expect(wasm.filter(m => m.out[0] === n && m.out[1] === spec.inputDim)).toEqual([])
    // The cpu backend does transposes inside its kernel at no extra cost: the flags stay there.
    const cpu = await matMulsOfOneStep('cpu')
    expect(cpu.length).toBe(wasm.length)
    expect(cpu.filter(m => m.flags).length).toBeGreaterThan(0)
    expect(cpu.filter(m => m.out[0] === n && m.out[1] === spec.inputDim)).toEqual([])
  })

  it('gives the same gradients on wasm (explicit transposes) and cpu (flags)', async () => {
    const x = data.x.subarray(0, 16 * 20)
    const y = data.y.subarray(0, 16)
    const gradsOn = async (backend: 'wasm' | 'cpu'): Promise<Map<string, Float32Array>> => {
      await selectBackend(backend, logger)
      const model = createModel(spec)
      const names = [...model.variables.keys()]
      const vars = [...model.variables.values()]
      const out = new Map<string, Float32Array>()
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => {
          const f = model.forward(tf.tensor2d(x, [16, 20]))
          const onehot = tf.oneHot(tf.tensor1d(y, 'int32'), 5)
          return tf.logSoftmax(f.logits).mul(onehot).sum(1).mean().neg().add(f.aux!.mul(0.5)) as tf.Scalar
        }, vars)
        names.forEach((name, i) => { out.set(name, grads[vars[i]!.name]!.dataSync() as Float32Array) })
      })
      model.dispose()
      return out
    }
    const a = await gradsOn('wasm')
    const b = await gradsOn('cpu')
    expect([...a.keys()]).toEqual([...b.keys()])
    let worst = 0
    for (const [name, g] of a) g.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - b.get(name)![i]!) / (1e-3 + Math.abs(v))) })
    expect(worst).toBeLessThan(1e-4)
  })
})
