/**
 * Private selection of the maximum spanning tree (MST's second phase).
 *
 * Each candidate edge (i, j) is scored by how badly the independence model
 * built from the noisy 1-way marginals explains the real 2-way marginal:
 * q_ij = || M_ij(D) - N * p_i (x) p_j ||_1. Adding or removing one row moves
 * one cell of M_ij by 1 and leaves the estimate alone, so q has sensitivity 1.
 * The tree grows Kruskal-style: each of the d-1 rounds picks one edge that
 * joins two components with the exponential mechanism, so a cycle is never
 * formed and the result is always a spanning tree.
 */
import type { Random } from '../components.ts'
import { InvalidArgumentError } from '../errors.ts'

export type Edge = readonly [number, number]

/** Index drawn with probability proportional to exp(eps * score / (2 * sensitivity)). */
export function exponentialMechanism (scores: readonly number[], eps: number, random: Random, sensitivity = 1): number {
  if (scores.length === 0) throw new InvalidArgumentError('the exponential mechanism needs at least one candidate')
  let max = -Infinity
  for (const s of scores) max = Math.max(max, s)
  // Subtracting the max keeps every exponent <= 0, so nothing overflows.
  const weights = scores.map(s => Math.exp(eps * (s - max) / (2 * sensitivity)))
  let total = 0
  for (const w of weights) total += w
  let u = random.next() * total
  for (let k = 0; k < weights.length; k++) {
    u -= weights[k]!
    if (u < 0) return k
  }
  return weights.length - 1
}

/** L1 distance between a real 2-way count table and the outer product estimate total * p (x) q. */
export function independenceScore (real: Float64Array, p: Float64Array, q: Float64Array, total: number): number {
  let sp = 0
  let sq = 0
  for (const x of p) sp += x
  for (const x of q) sq += x
  let score = 0
  for (let a = 0; a < p.length; a++) {
    for (let b = 0; b < q.length; b++) {
      const est = sp > 0 && sq > 0 ? total * (p[a]! / sp) * (q[b]! / sq) : 0
      score += Math.abs(real[a * q.length + b]! - est)
    }
  }
  return score
}

/**
 * A spanning tree over `d` columns, chosen with `eps` per round from
 * `score(i, j)` (i < j) of every pair.
 */
export function privateSpanningTree (d: number, score: (i: number, j: number) => number, eps: number, random: Random): Edge[] {
  const parent = Array.from({ length: d }, (_, k) => k)
  const find = (k: number): number => {
    while (parent[k] !== k) {
      parent[k] = parent[parent[k]!]!
      k = parent[k]!
    }
    return k
  }
  const all: { edge: Edge, score: number }[] = []
  for (let i = 0; i < d; i++) {
    for (let j = i + 1; j < d; j++) all.push({ edge: [i, j], score: score(i, j) })
  }
  const tree: Edge[] = []
  while (tree.length < d - 1) {
    const candidates = all.filter(c => find(c.edge[0]) !== find(c.edge[1]))
    const pick = candidates[exponentialMechanism(candidates.map(c => c.score), eps, random)]!
    tree.push(pick.edge)
    parent[find(pick.edge[0])] = find(pick.edge[1])
  }
  return tree
}
