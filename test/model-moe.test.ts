import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { createModel, modelFromSafetensors, modelToSafetensors } from '../node/model/create.ts'
import { selectBackend } from '../node/model/backend.ts'
import { topKRoutes } from '../node/model/moe.ts'
import { denseSpecFor, groupOf, initParams, paramCounts, paramDefs } from '../node/model/params.ts'
import { referenceMoeForward, referenceMoeLoss } from '../node/model/reference.ts'
import { parseMoeSpec, parseModelSpec, specHash, type MoeSpec } from '../node/model/spec.ts'
import { crossEntropy } from '../node/train/loss.ts'

const tiny = (topK: 1 | 2): MoeSpec => parseMoeSpec({ inputDim: 6, width: 5, expertHidden: 4, experts: 3, topK, classes: 3, seed: 11, routerInitScale: 3 })
const small = (topK: 1 | 2): MoeSpec => parseMoeSpec({ inputDim: 20, width: 16, expertHidden: 24, experts: 4, topK, classes: 5, seed: 3, routerInitScale: 3 })

function randomInputs (n: number, dim: number, classes: number, seed: number): { x: Float32Array, y: Int32Array } {
  const r = createSeededRandom(seed)
  return { x: Float32Array.from({ length: n * dim }, () => r.normal()), y: Int32Array.from({ length: n }, () => r.int(classes)) }
}

function maxAbsDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

beforeAll(async () => {
  await selectBackend('wasm', createSilentLogger())
})

describe('model spec', () => {
  it('validates with named errors that name the field', () => {
    expect(() => parseMoeSpec({ inputDim: 4, width: 4, expertHidden: 4, experts: 1, topK: 2, classes: 3, seed: 1 }))
      .toThrowError(expect.objectContaining({ name: 'ModelSpecError', message: 'invalid MoE spec: topK: topK must not exceed experts, got 2' }))
    // Worded like every other config error (protocols/validation.ts): field path, what was expected, what was given.
    expect(() => parseMoeSpec({ inputDim: 0, width: 4, expertHidden: 4, experts: 2, topK: 3, classes: 3, seed: 1 }))
      .toThrowError(expect.objectContaining({ name: 'ModelSpecError', message: 'invalid MoE spec: inputDim: expected a number ≥ 1, got 0; topK: expected one of 1, 2, got 3' }))
    expect(() => parseMoeSpec({ ...tiny(1), width: 0 })).toThrowError(expect.objectContaining({ name: 'ModelSpecError', message: 'invalid MoE spec: width: expected a number ≥ 1, got 0' }))
    expect(() => parseModelSpec({ kind: 'dense', inputDim: 2, width: 'a', hidden: 3, classes: 2, seed: 1 }))
      .toThrowError(expect.objectContaining({ name: 'ModelSpecError', message: 'invalid dense spec: width: expected a number, got "a"' }))
    expect(() => parseModelSpec({ kind: 'mlp', inputDim: 2, hidden: [0], classes: 2, seed: 1.5 }))
      .toThrowError(expect.objectContaining({ name: 'ModelSpecError', message: 'invalid MLP spec: hidden[0]: expected a number ≥ 1, got 0; seed: expected an integer, got 1.5' }))
    expect(() => parseModelSpec({ kind: 'cnn' })).toThrowError(expect.objectContaining({ name: 'ModelSpecError', message: 'invalid model spec: unknown kind "cnn" (expected \'moe\', \'dense\' or \'mlp\')' }))
    expect(() => parseMoeSpec({ ...tiny(1), extra: 1 })).toThrowError(expect.objectContaining({ name: 'ModelSpecError', message: 'invalid MoE spec: (root): unknown field \'extra\'' }))
    expect(() => parseMoeSpec(null)).toThrowError(expect.objectContaining({ name: 'ModelSpecError', message: 'invalid MoE spec: (root): expected an object, got null' }))
  })

  it('hashes the canonical spec: defaults and key order do not matter, any field does', () => {
    const base = { inputDim: 784, width: 64, expertHidden: 64, experts: 4, topK: 2, classes: 10, seed: 1 }
    const h = specHash(base)
    expect(h).toMatch(/^[0-9a-f]{64}$/)
    expect(specHash({ routerInitScale: 0.1, kind: 'moe', ...base })).toBe(h)
    expect(specHash(Object.fromEntries(Object.entries(base).reverse()))).toBe(h)
    expect(specHash({ ...base, seed: 2 })).not.toBe(h)
    expect(specHash({ ...base, topK: 1 })).not.toBe(h)
  })
})

describe('parameters', () => {
  it('has stable sorted names, groups by prefix, and seeded initial values', () => {
    const spec = tiny(2)
    expect(paramDefs(spec).map(d => `${d.name}:${d.shape.join('x')}`)).toEqual([
      'expert.0.b1:4', 'expert.0.b2:5', 'expert.0.w1:5x4', 'expert.0.w2:4x5',
      'expert.1.b1:4', 'expert.1.b2:5', 'expert.1.w1:5x4', 'expert.1.w2:4x5',
      'expert.2.b1:4', 'expert.2.b2:5', 'expert.2.w1:5x4', 'expert.2.w2:4x5',
      'shared.head.b:3', 'shared.head.w:5x3', 'shared.router.b:3', 'shared.router.w:5x3', 'shared.trunk.b:5', 'shared.trunk.w:6x5'
    ])
    expect(groupOf('shared.router.w')).toBe('shared')
    expect(groupOf('expert.12.w1')).toBe('expert:12')
    expect(() => groupOf('experts.1.w1')).toThrowError(expect.objectContaining({ name: 'ParamMismatchError' }))
    const a = initParams(spec)
    expect(initParams(spec).get('shared.trunk.w')!.data).toEqual(a.get('shared.trunk.w')!.data)
    expect(initParams({ ...spec, seed: 12 }).get('shared.trunk.w')!.data).not.toEqual(a.get('shared.trunk.w')!.data)
    expect([...a.get('expert.1.b1')!.data]).toEqual([0, 0, 0, 0])
  })

  it('counts active parameters, and the dense baseline matches the MoE within one FFN unit', () => {
    const moe = parseMoeSpec({ inputDim: 784, width: 64, expertHidden: 128, experts: 4, topK: 2, classes: 10, seed: 1 })
    const c = paramCounts(moe)
    // trunk 784*64+64, router 64*4+4, head 64*10+10, experts 4 * (64*128+128+128*64+64).
    expect(c.total).toBe(50240 + 260 + 650 + 4 * 16576)
    expect(c.active).toBe(50240 + 260 + 650 + 2 * 16576)
    const dense = denseSpecFor(moe)
    expect(Math.abs(paramCounts(dense).active - c.active)).toBeLessThanOrEqual(2 * 64 + 1)
    expect(paramCounts(parseModelSpec({ kind: 'mlp', inputDim: 784, hidden: [200, 200], classes: 10, seed: 0 })).total).toBe(199210)
  })

  it('gets and sets parameters by group, refusing maps that do not fit', () => {
    const m = createModel(tiny(2))
    const other = initParams({ ...tiny(2), seed: 99 })
    m.setParams(other, { only: ['expert:1'] })
    const got = m.getParams()
    expect([...got.keys()]).toEqual(paramDefs(tiny(2)).map(d => d.name))
    expect(got.get('expert.1.w1')!.data).toEqual(other.get('expert.1.w1')!.data)
    expect(got.get('expert.0.w1')!.data).toEqual(initParams(tiny(2)).get('expert.0.w1')!.data)
    expect(() => m.setParams(new Map([['shared.head.b', { shape: [3], data: new Float32Array(3) }]])))
      .toThrowError(expect.objectContaining({ name: 'ParamMismatchError', message: "missing parameter 'expert.0.b1'" }))
    const bad = new Map(other)
    bad.set('shared.head.w', { shape: [3, 5], data: new Float32Array(15) })
    expect(() => m.setParams(bad, { only: ['shared'] })).toThrow("parameter 'shared.head.w' has shape [3, 5], the model needs [5, 3]")
    expect(() => m.setParams(other, { only: ['expert:7'] })).toThrow('no parameter group expert:7 in this model')
    m.dispose()
  })
})

describe('tfjs MoE against the float64 reference', () => {
  it('picks the top k with ties to the lower index', () => {
    const r = topKRoutes([0.2, 0.5, 0.3, 0.4, 0.4, 0.2], 2, 3, 2)
    expect([...r.mask]).toEqual([0, 1, 1, 1, 1, 0])
    expect(r.rows.map(x => [...x])).toEqual([[1], [0, 1], [0]])
  })

  for (const topK of [1, 2] as const) {
    it(`matches within 1e-5 (top-${topK}, learned router and external gates)`, () => {
      const spec = small(topK)
      const m = createModel(spec)
      const params = m.getParams()
      const n = 64
      const { x } = randomInputs(n, spec.inputDim, spec.classes, 7)
      const ref = referenceMoeForward(spec, params, x, n)
      // Routing is not degenerate: every expert gets rows.
      const used = new Set<number>()
      for (let i = 0; i < n * spec.experts; i++) if (ref.gates[i] !== 0) used.add(i % spec.experts)
      expect(used.size).toBe(spec.experts)
      expect(maxAbsDiff(m.predict(x), ref.probs)).toBeLessThan(1e-5)
      expect(maxAbsDiff(m.features(x), ref.h)).toBeLessThan(1e-5)
      const logits = tf.tidy(() => m.forward(tf.tensor2d(x, [n, spec.inputDim])).logits.dataSync())
      expect(maxAbsDiff(logits, ref.logits)).toBeLessThan(1e-5)
      const aux = tf.tidy(() => m.forward(tf.tensor2d(x, [n, spec.inputDim])).aux!.dataSync()[0]!)
      expect(Math.abs(aux - ref.aux!)).toBeLessThan(1e-5)

      const r = createSeededRandom(9)
      const gates = Float32Array.from({ length: n * spec.experts }, () => (r.next() < 0.5 ? 0 : r.next()))
      const refG = referenceMoeForward(spec, params, x, n, { gates })
      expect(maxAbsDiff(m.predict(x, { gates }), refG.probs)).toBeLessThan(1e-5)
      expect(maxAbsDiff(refG.probs, ref.probs)).toBeGreaterThan(1e-3) // the gates really changed the output
      m.dispose()
    })
  }

  it('matches on an MNIST-sized spec too (784 inputs, 700 rows: several inference chunks)', () => {
    const spec = parseMoeSpec({ inputDim: 784, width: 32, expertHidden: 32, experts: 4, topK: 2, classes: 10, seed: 5 })
    const m = createModel(spec)
    const n = 700
    const r = createSeededRandom(1)
    const x = Float32Array.from({ length: n * 784 }, () => r.next())
    expect(maxAbsDiff(m.predict(x), referenceMoeForward(spec, m.getParams(), x, n).probs)).toBeLessThan(1e-5)
    m.dispose()
  })
})

describe('tfjs gradients against finite differences of the reference', () => {
  const cases: Array<[string, 1 | 2, boolean]> = [['top-1 router', 1, false], ['top-2 router', 2, false], ['external gates', 2, true]]
  for (const [label, topK, external] of cases) {
    it(`agree for every parameter (${label}, with the balance loss)`, () => {
      const spec = tiny(topK)
      const m = createModel(spec)
      const n = 8
      const { x, y } = randomInputs(n, spec.inputDim, spec.classes, 21)
      const auxWeight = 0.5
      const r = createSeededRandom(4)
      const gates = external ? Float32Array.from({ length: n * spec.experts }, () => (r.next() < 0.4 ? 0 : r.next())) : undefined
      const vars = [...m.variables.values()]
      const names = [...m.variables.keys()]
      const { grads } = tf.variableGrads(() => {
        const out = m.forward(tf.tensor2d(x, [n, spec.inputDim]), gates === undefined ? {} : { gates })
        const ce = crossEntropy(out.logits, y)
        return out.aux === null ? ce : ce.add(out.aux.mul(auxWeight)) as tf.Scalar
      }, vars)
      const params = new Map([...m.getParams()].map(([k, t]) => [k, { shape: t.shape, data: Float64Array.from(t.data) }]))
      const eps = 1e-6
      let checked = 0
      let worst = 0
      for (let vi = 0; vi < names.length; vi++) {
        const name = names[vi]!
        const g = grads[vars[vi]!.name]?.dataSync() ?? new Float32Array(params.get(name)!.data.length)
        const data = params.get(name)!.data
        for (let j = 0; j < data.length; j++) {
          const keep = data[j]!
          data[j] = keep + eps
          const up = referenceMoeLoss(spec, params, x, y, n, { auxWeight, gates })
          data[j] = keep - eps
          const down = referenceMoeLoss(spec, params, x, y, n, { auxWeight, gates })
          data[j] = keep
          const fd = (up - down) / (2 * eps)
          worst = Math.max(worst, Math.abs(g[j]! - fd) / (1e-4 + Math.abs(fd)))
          checked++
        }
      }
      expect(checked).toBe(paramCounts(spec).total)
      expect(worst).toBeLessThan(2e-3)
      if (!external) {
        // The router really learns: its gradient is not zero.
        const gr = grads[m.variables.get('shared.router.w')!.name]!.dataSync()
        expect(Math.max(...gr.map(Math.abs))).toBeGreaterThan(1e-4)
      }
      for (const t of Object.values(grads)) t.dispose()
      m.dispose()
    })
  }
})

describe('models in safetensors', () => {
  it('round-trip bit-exactly with the spec hash in the metadata, and refuse another spec', () => {
    const spec = small(2)
    const m = createModel(spec)
    m.setParams(initParams({ ...spec, seed: 77 }))
    const bytes = modelToSafetensors(m, { site: 'a' })
    const back = modelFromSafetensors(bytes, spec)
    const a = m.getParams()
    for (const [name, t] of back.getParams()) expect(new Uint32Array(t.data.buffer)).toEqual(new Uint32Array(a.get(name)!.data.buffer))
    const { x } = randomInputs(10, spec.inputDim, spec.classes, 1)
    expect(back.predict(x)).toEqual(m.predict(x))
    expect(() => modelFromSafetensors(bytes, { ...spec, seed: 4 })).toThrowError(expect.objectContaining({ name: 'ParamMismatchError', message: expect.stringMatching(/^weights file was written for spec [0-9a-f]{12}…, this spec hashes to/) }))
    m.dispose()
    back.dispose()
  })
})

describe('model inputs', () => {
  it('refuses inputs and gates that do not fit, with named errors', () => {
    const spec = small(2)
    const m = createModel(spec)
    expect(() => m.predict(new Float32Array(30))).toThrowError(expect.objectContaining({ name: 'ModelInputError', message: 'input of 30 values is not a whole number of rows of 20' }))
    expect(() => m.predict(new Float32Array(40), { gates: new Float32Array(7) })).toThrow('gates hold 7 values, expected 2 rows x 4 experts = 8')
    expect(() => m.predict(new Float32Array(20), { gates: new Float32Array([1, NaN, 0, 0]) })).toThrow('gate of row 0, expert 1 is NaN')
    m.dispose()
  })
})
