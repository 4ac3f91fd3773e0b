/**
 * The MST generator (McKenna, Miklau and Sheldon, "Winning the NIST Contest:
 * A scalable and general approach to differentially private synthetic data",
 * 2021), in rho-zCDP, with the budget split in three equal parts as there:
 *   1. measure every 1-way marginal with Gaussian noise;
 *   2. choose a spanning tree of 2-way marginals with the exponential mechanism;
 *   3. measure the tree's 2-way marginals with Gaussian noise;
 * then make the measurements consistent (consistency.ts) and sample rows
 * along the tree. Deterministic given the Random.
 *
 * Not done here, as in the original: the domain compression of rare
 * categories (bounded bins from the schema keep domains small instead) and
 * the Private-PGM solver, which on a tree is replaced by consistency.ts.
 */
import type { Random } from '../components.ts'
import { InvalidArgumentError } from '../errors.ts'
import type { Encoded } from './domain.ts'
import { combineOneWay, estimateTotal, fitTwoWay, marginOf, projectSimplex, type Measured } from './consistency.ts'
import { addGaussian, countOneWay, countTwoWay } from './marginals.ts'
import { independenceScore, privateSpanningTree, type Edge } from './select.ts'
import { exponentialEpsilon, gaussianSigma } from './zcdp.ts'

export interface MstOptions {
  /** Total zCDP budget of the run (see zcdp.ts for the (eps, delta) conversion). */
  rho: number
  /** Shares of rho for 1-way measurement, tree selection, 2-way measurement. MST uses thirds. */
  split?: readonly [number, number, number]
}

export interface MstBudget {
  rho: number
  rhoOneWay: number
  rhoSelect: number
  rhoTwoWay: number
  sigmaOneWay: number
  sigmaTwoWay: number | null
  /** The exponential mechanism's eps in each of the d-1 selection rounds. */
  selectEpsilon: number | null
}

export interface MstModel {
  sizes: number[]
  /** Estimated number of real rows (itself a noisy, private estimate). */
  total: number
  edges: Edge[]
  /** Consistent 1-way marginals (counts). */
  oneWay: Float64Array[]
  /** Per edge [i, j], the consistent 2-way table, row-major over (i, j). */
  twoWay: Float64Array[]
  budget: MstBudget
}

export function fitMst (data: Encoded, sizes: readonly number[], options: MstOptions, random: Random): MstModel {
  const d = sizes.length
  if (d === 0 || data.codes.length !== d) throw new InvalidArgumentError(`fitMst: ${data.codes.length} code columns for ${d} domain columns`)
  const split = options.split ?? [1 / 3, 1 / 3, 1 / 3]
  if (split.some(s => !(s > 0)) || Math.abs(split[0] + split[1] + split[2] - 1) > 1e-9) {
    throw new InvalidArgumentError(`fitMst: the budget split must be three positive shares summing to 1, got [${split.join(', ')}]`)
  }
  // One column has no pairs: the whole budget goes to its 1-way marginal.
  const [rho1, rhoSel, rho2] = d === 1 ? [options.rho, 0, 0] : split.map(s => s * options.rho) as [number, number, number]

  const sigma1 = gaussianSigma(rho1, d)
  const rng1 = random.fork('one-way')
  const measuredOne: Measured[] = sizes.map((s, i) => ({ values: addGaussian(countOneWay(data, i, s), sigma1, rng1), variance: sigma1 ** 2 }))
  const budget: MstBudget = { rho: options.rho, rhoOneWay: rho1, rhoSelect: rhoSel, rhoTwoWay: rho2, sigmaOneWay: sigma1, sigmaTwoWay: null, selectEpsilon: null }
  if (d === 1) {
    const total = estimateTotal(measuredOne)
    return { sizes: [...sizes], total, edges: [], oneWay: [projectSimplex(measuredOne[0]!.values, total)], twoWay: [], budget }
  }

  // Phase 2: the tree, scored against the independence model of phase 1.
  const total1 = estimateTotal(measuredOne)
  const p = measuredOne.map(m => projectSimplex(m.values, total1))
  budget.selectEpsilon = exponentialEpsilon(rhoSel, d - 1)
  const edges = privateSpanningTree(d, (i, j) => independenceScore(countTwoWay(data, i, j, sizes), p[i]!, p[j]!, total1), budget.selectEpsilon, random.fork('select'))

  // Phase 3: measure the tree's edges.
  const sigma2 = gaussianSigma(rho2, edges.length)
  budget.sigmaTwoWay = sigma2
  const rng2 = random.fork('two-way')
  const measuredTwo: Measured[] = edges.map(([i, j]) => ({ values: addGaussian(countTwoWay(data, i, j, sizes), sigma2, rng2), variance: sigma2 ** 2 }))

  // Consistency: one total, one 1-way marginal per column, tables that agree with them.
  const total = estimateTotal([...measuredOne, ...measuredTwo])
  const oneWay = sizes.map((_, k) => {
    const estimates: Measured[] = [measuredOne[k]!]
    edges.forEach(([i, j], e) => {
      if (i !== k && j !== k) return
      const m = measuredTwo[e]!
      const other = sizes[i === k ? j : i]!
      estimates.push({ values: marginOf(m.values, sizes[i]!, sizes[j]!, i === k ? 0 : 1), variance: other * m.variance })
    })
    return combineOneWay(estimates, total)
  })
  const twoWay = edges.map(([i, j], e) => fitTwoWay(measuredTwo[e]!.values, oneWay[i]!, oneWay[j]!))
  return { sizes: [...sizes], total, edges, oneWay, twoWay, budget }
}

/** n rows drawn from the tree model: the root from its 1-way marginal, each child given its parent. */
export function sampleMst (model: MstModel, n: number, random: Random): Encoded {
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`sampleMst: rows must be an integer >= 0, got ${n}`)
  const d = model.sizes.length
  const codes = model.sizes.map(() => new Int32Array(n))
  const seen = new Array<boolean>(d).fill(false)
  const drawAll = (column: number, cumulative: (row: number) => Float64Array): void => {
    const out = codes[column]!
    for (let r = 0; r < n; r++) out[r] = drawFrom(cumulative(r), random)
  }
  // Walk the tree breadth-first from column 0; every edge is used exactly once.
  seen[0] = true
  const rootCum = cumulativeOf(model.oneWay[0]!)
  drawAll(0, () => rootCum)
  const queue = [0]
  while (queue.length > 0) {
    const parent = queue.shift()!
    model.edges.forEach(([i, j], e) => {
      if ((i !== parent && j !== parent) || seen[i === parent ? j : i]) return
      const child = i === parent ? j : i
      const table = model.twoWay[e]!
      const conditionals = Array.from({ length: model.sizes[parent]! }, (_, a) =>
        cumulativeOf(conditionalRow(table, model.sizes[i]!, model.sizes[j]!, a, i === parent), model.oneWay[child]!))
      const parentCodes = codes[parent]!
      drawAll(child, r => conditionals[parentCodes[r]!]!)
      seen[child] = true
      queue.push(child)
    })
  }
  return { n, codes }
}

/** The counts of the child given parent code a: a row of the table, or a column when the parent is the second axis. */
function conditionalRow (table: Float64Array, rows: number, cols: number, a: number, parentIsRow: boolean): Float64Array {
  if (parentIsRow) return table.slice(a * cols, (a + 1) * cols)
  const out = new Float64Array(rows)
  for (let b = 0; b < rows; b++) out[b] = table[b * cols + a]!
  return out
}

/** Cumulative sums normalised to end at 1; an all-zero row falls back to `fallback` (the child's marginal). */
function cumulativeOf (weights: Float64Array, fallback?: Float64Array): Float64Array {
  let total = 0
  for (const w of weights) total += w
  const source = total > 0 || fallback === undefined ? weights : fallback
  if (total <= 0 && fallback !== undefined) {
    total = 0
    for (const w of source) total += w
  }
  const out = new Float64Array(source.length)
  let acc = 0
  for (let k = 0; k < source.length; k++) {
    acc += total > 0 ? source[k]! / total : 1 / source.length
    out[k] = acc
  }
  return out
}

function drawFrom (cumulative: Float64Array, random: Random): number {
  const u = random.next()
  let lo = 0
  let hi = cumulative.length - 1
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (u < cumulative[mid]!) hi = mid
    else lo = mid + 1
  }
  return lo
}
