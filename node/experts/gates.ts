/**
 * Routing with opt-out, as plain arithmetic (no tfjs): a router gives each
 * row a nonnegative score per expert; masked experts get 0 and the rest are
 * renormalised to sum to 1; then the top k are kept (Switch top-1 keeps the
 * probability as the gate, top-2 renormalises the pair, as the model trains).
 * With nothing masked and the learned router this reproduces the model's own
 * routing; with a mask it is the same router, never retrained.
 */
import type { TensorMap } from '../../protocols/tensors.ts'
import { AssemblyError } from '../errors.ts'
import type { MoeSpec } from '../model/spec.ts'

export interface GateSelection {
  /** Experts kept per row: a number, or 'all' for a dense soft mixture. */
  topK: number | 'all'
  /** Rescale the kept gates to sum to 1. */
  renormalise: boolean
}

/** The selection the model trains with: top-k of the spec; top-1 keeps the probability (Switch). */
export function defaultSelection (spec: MoeSpec): GateSelection {
  return { topK: spec.topK, renormalise: spec.topK > 1 }
}

export interface ExpertRouter {
  /** Recorded in an export's manifest; a loader rebuilds the router by this name. */
  readonly kind: string
  /**
   * n x E nonnegative scores (e.g. probabilities) for n rows, from their trunk
   * features (n x width) or the raw inputs (n x inputDim). A router that gives
   * log-scores wraps them in `softmaxRows`.
   */
  scores: (features: Float32Array, n: number, inputs: Float32Array) => ArrayLike<number>
  /** What the router needs besides the model parameters, saved with an export (names `router.*`). */
  readonly tensors?: TensorMap
}

export interface RouterContext {
  spec: MoeSpec
  /** The shared parameters of the assembled model (router rows merged in). */
  shared: TensorMap
  /** Per slot, the `router.*` tensors its artifact carried (empty for an absent slot). */
  experts: readonly TensorMap[]
  /** Router tensors read back from an export (empty at assembly). */
  saved: TensorMap
}

/** Builds a router; pass one to assembleMoe to plug in another routing recipe. */
export type RouterFactory = (ctx: RouterContext) => ExpertRouter

/** The learned router in the shared parameters: softmax(h Wr + br), in float64. */
export const learnedRouter: RouterFactory = (ctx) => {
  const { width, experts: E } = ctx.spec
  const w = ctx.shared.get('shared.router.w')
  const b = ctx.shared.get('shared.router.b')
  if (w === undefined || b === undefined || w.data.length !== width * E || b.data.length !== E) {
    throw new AssemblyError(`the shared parameters hold no router of ${width} x ${E}`)
  }
  return {
    kind: 'learned',
    scores: (h, n) => {
      const out = new Float64Array(n * E)
      for (let i = 0; i < n; i++) {
        const row = out.subarray(i * E, (i + 1) * E)
        for (let e = 0; e < E; e++) row[e] = b.data[e]!
        for (let k = 0; k < width; k++) {
          const x = h[i * width + k]!
          if (x === 0) continue
          for (let e = 0; e < E; e++) row[e]! += x * w.data[k * E + e]!
        }
        let max = -Infinity
        for (let e = 0; e < E; e++) max = Math.max(max, row[e]!)
        let sum = 0
        for (let e = 0; e < E; e++) { row[e] = Math.exp(row[e]! - max); sum += row[e]! }
        for (let e = 0; e < E; e++) row[e]! /= sum
      }
      return out
    }
  }
}

/**
 * Row-wise softmax of n x E log-scores (-Infinity allowed): the bridge from a
 * log-density router. With `renormalise`, selectGates then gives exactly a
 * softmax over each row's top-k usable log-scores. A row with no finite score
 * becomes zeros (selectGates spreads it evenly).
 */
export function softmaxRows (logScores: ArrayLike<number>, n: number, E: number): Float64Array {
  if (logScores.length !== n * E) throw new AssemblyError(`the router returned ${logScores.length} log-scores, expected ${n} rows x ${E} experts`)
  const out = new Float64Array(n * E)
  for (let i = 0; i < n; i++) {
    let max = -Infinity
    for (let e = 0; e < E; e++) max = Math.max(max, logScores[i * E + e]!)
    if (max === -Infinity) continue
    if (Number.isNaN(max) || max === Infinity) throw new AssemblyError(`the router gave row ${i} a log-score of ${max}`)
    let sum = 0
    for (let e = 0; e < E; e++) { const v = Math.exp(logScores[i * E + e]! - max); out[i * E + e] = v; sum += v }
    for (let e = 0; e < E; e++) out[i * E + e]! /= sum
  }
  return out
}

/**
 * n x E gates from n x E scores and a usable mask (1 = may be used).
 * A masked expert's gate is exactly 0 on every row. A row whose score mass
 * lies wholly on masked experts spreads evenly over the usable ones.
 */
export function selectGates (scores: ArrayLike<number>, n: number, E: number, usable: Uint8Array, selection: GateSelection): Float32Array {
  if (scores.length !== n * E) throw new AssemblyError(`the router returned ${scores.length} scores, expected ${n} rows x ${E} experts`)
  if (usable.length !== E) throw new AssemblyError(`mask of ${usable.length} entries for ${E} experts`)
  const allowed: number[] = []
  for (let e = 0; e < E; e++) if (usable[e] === 1) allowed.push(e)
  const gates = new Float32Array(n * E)
  if (allowed.length === 0) return gates
  const k = selection.topK === 'all' ? allowed.length : Math.min(selection.topK, allowed.length)
  const p = new Float64Array(E)
  const picked: number[] = []
  for (let i = 0; i < n; i++) {
    let sum = 0
    for (const e of allowed) {
      const s = scores[i * E + e]!
      if (!(s >= 0 && Number.isFinite(s))) throw new AssemblyError(`the router gave row ${i}, expert ${e} the score ${s}; scores must be finite and >= 0`)
      sum += s
    }
    p.fill(0)
    for (const e of allowed) p[e] = sum > 0 ? scores[i * E + e]! / sum : 1 / allowed.length
    // Top k of the usable experts; ties go to the lower index.
    picked.length = 0
    for (let j = 0; j < k; j++) {
      let best = -1
      for (const e of allowed) if (!picked.includes(e) && (best < 0 || p[e]! > p[best]!)) best = e
      picked.push(best)
    }
    let kept = 0
    for (const e of picked) kept += p[e]!
    for (const e of picked) gates[i * E + e] = selection.renormalise && kept > 0 ? p[e]! / kept : p[e]!
  }
  return gates
}
