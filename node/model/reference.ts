/**
 * A plain-TypeScript float64 forward pass of the MoE, written independently
 * of tfjs from the definition in moe.ts. Tests hold tfjs to it (within 1e-5)
 * and check tfjs gradients against finite differences of referenceMoeLoss.
 * Slow by design: loops, no batching tricks.
 */
import { ModelInputError } from '../errors.ts'
import { GELU_A, GELU_C } from './model.ts'
import type { MoeSpec } from './spec.ts'

export type RefParams = ReadonlyMap<string, { shape: readonly number[], data: ArrayLike<number> }>

export interface RefOutput {
  /** Trunk output, n x width. */
  h: Float64Array
  /** Router probabilities, n x E (null with external gates). */
  routerProbs: Float64Array | null
  /** Mixing weights used, n x E. */
  gates: Float64Array
  logits: Float64Array
  /** Class probabilities, n x C. */
  probs: Float64Array
  /** Switch balance loss (null with external gates). */
  aux: number | null
}

function p (params: RefParams, name: string): ArrayLike<number> {
  const t = params.get(name)
  if (t === undefined) throw new ModelInputError(`reference: missing parameter '${name}'`)
  return t.data
}

/** y = x W + b for n rows: x n x a, W a x b. */
function affine (x: ArrayLike<number>, n: number, a: number, w: ArrayLike<number>, bias: ArrayLike<number>, b: number): Float64Array {
  const y = new Float64Array(n * b)
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < b; j++) {
      let s = bias[j]!
      for (let k = 0; k < a; k++) s += x[i * a + k]! * w[k * b + j]!
      y[i * b + j] = s
    }
  }
  return y
}

export function geluRef (v: number): number {
  return v / (1 + Math.exp(-GELU_C * (v + GELU_A * v * v * v)))
}

function softmaxRows (z: Float64Array, n: number, m: number): Float64Array {
  const out = new Float64Array(n * m)
  for (let i = 0; i < n; i++) {
    let max = -Infinity
    for (let j = 0; j < m; j++) max = Math.max(max, z[i * m + j]!)
    let s = 0
    for (let j = 0; j < m; j++) s += (out[i * m + j] = Math.exp(z[i * m + j]! - max))
    for (let j = 0; j < m; j++) out[i * m + j]! /= s
  }
  return out
}

export function referenceMoeForward (spec: MoeSpec, params: RefParams, x: ArrayLike<number>, n: number, options: { gates?: ArrayLike<number> } = {}): RefOutput {
  const { inputDim: D, width: d, expertHidden: f, experts: E, topK: k, classes: C } = spec
  if (x.length !== n * D) throw new ModelInputError(`reference: input has ${x.length} values, expected ${n * D}`)
  const h = affine(x, n, D, p(params, 'shared.trunk.w'), p(params, 'shared.trunk.b'), d).map(geluRef)

  let gates: Float64Array
  let routerProbs: Float64Array | null = null
  let aux: number | null = null
  if (options.gates !== undefined) {
    if (options.gates.length !== n * E) throw new ModelInputError(`reference: gates have ${options.gates.length} values, expected ${n * E}`)
    gates = Float64Array.from(options.gates)
  } else {
    routerProbs = softmaxRows(affine(h, n, d, p(params, 'shared.router.w'), p(params, 'shared.router.b'), E), n, E)
    gates = new Float64Array(n * E)
    const slots = new Float64Array(E)
    for (let i = 0; i < n; i++) {
      const row = Array.from(routerProbs.subarray(i * E, (i + 1) * E))
      // Stable sort by probability descending keeps the lower index on ties.
      const chosen = row.map((v, e) => [v, e] as const).sort((a, b) => b[0] - a[0]).slice(0, k).map(([, e]) => e)
      const total = chosen.reduce((s, e) => s + row[e]!, 0)
      for (const e of chosen) {
        gates[i * E + e] = k === 1 ? row[e]! : row[e]! / total
        slots[e]!++
      }
    }
    aux = 0
    for (let e = 0; e < E; e++) {
      let meanProb = 0
      for (let i = 0; i < n; i++) meanProb += routerProbs[i * E + e]!
      aux += (slots[e]! / (n * k)) * (meanProb / n)
    }
    aux *= E
  }

  const z = Float64Array.from(h)
  for (let e = 0; e < E; e++) {
    const w1 = p(params, `expert.${e}.w1`)
    const b1 = p(params, `expert.${e}.b1`)
    const w2 = p(params, `expert.${e}.w2`)
    const b2 = p(params, `expert.${e}.b2`)
    for (let i = 0; i < n; i++) {
      const g = gates[i * E + e]!
      if (g === 0) continue
      const hid = affine(h.subarray(i * d, (i + 1) * d), 1, d, w1, b1, f).map(geluRef)
      const y = affine(hid, 1, f, w2, b2, d)
      for (let j = 0; j < d; j++) z[i * d + j]! += g * y[j]!
    }
  }
  const logits = affine(z, n, d, p(params, 'shared.head.w'), p(params, 'shared.head.b'), C)
  return { h, routerProbs, gates, logits, probs: softmaxRows(logits, n, C), aux }
}

/** Mean cross-entropy plus auxWeight times the balance loss: what the trainer minimises. */
export function referenceMoeLoss (spec: MoeSpec, params: RefParams, x: ArrayLike<number>, y: ArrayLike<number>, n: number, options: { gates?: ArrayLike<number>, auxWeight?: number } = {}): number {
  const out = referenceMoeForward(spec, params, x, n, options)
  let ce = 0
  for (let i = 0; i < n; i++) ce -= Math.log(out.probs[i * spec.classes + y[i]!]!)
  return ce / n + (options.auxWeight ?? 0) * (out.aux ?? 0)
}
