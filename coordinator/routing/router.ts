/**
 * The density router: one Gaussian per released (site, label, cell)
 * component in the shared projected space; an expert's score for a row is
 * log Σ over its components of prior × density. Gates are a softmax over
 * the top-k allowed experts' scores; an opted-out expert gets exactly 0.
 */
import { RoutingInputError } from '../errors.ts'
import type { RoutingConfig } from './config.ts'
import { symmetricEigen } from './linalg.ts'
import { meanAndCovariance } from './moments.ts'
import { project, type Projection } from './projection.ts'
import type { SiteRelease } from './release.ts'

export interface GaussianComponent {
  expert: number
  label: number
  cell: number
  /** log of this component's share of all released rows. */
  logPrior: number
  mean: Float64Array
  /** k × k, column j the j-th eigenvector of the (regularised) covariance. */
  eigenvectors: Float64Array
  /** 1 / sqrt(eigenvalue j). */
  invSqrtEigenvalues: Float64Array
  logDet: number
}

export interface DensityRouter {
  experts: number
  projection: Projection
  components: GaussianComponent[]
}

/** Build the router from every site's release 2 and the shared projection. */
export function buildDensityRouter (projection: Projection, releases: readonly SiteRelease[], experts: number, config: RoutingConfig): DensityRouter {
  if (!Number.isInteger(experts) || experts <= 0) throw new RoutingInputError(`experts must be a positive integer, got ${experts}`)
  if (!(config.tieAlpha >= 0 && config.tieAlpha <= 1) || !(config.shrink >= 0 && config.shrink <= 1)) throw new RoutingInputError(`tieAlpha and shrink must lie in [0, 1], got ${config.tieAlpha} and ${config.shrink}`)
  const k = projection.dim
  const seen = new Set<number>()
  const kept: Array<{ expert: number, label: number, cell: number, n: number, mean: Float64Array, cov: Float64Array }> = []
  for (const rel of releases) {
    if (!Number.isInteger(rel.expert) || rel.expert < 0 || rel.expert >= experts) throw new RoutingInputError(`release for expert ${rel.expert} is outside 0..${experts - 1}`)
    if (seen.has(rel.expert)) throw new RoutingInputError(`two releases for expert ${rel.expert}`)
    seen.add(rel.expert)
    for (const c of rel.components) {
      if (c.moments.dim !== k) throw new RoutingInputError(`component (label ${c.label}, cell ${c.cell}) of expert ${rel.expert} has dimension ${c.moments.dim}, the projection has ${k}`)
      if (!(c.moments.count >= config.minCount)) continue
      const { mean, covariance } = meanAndCovariance(c.moments)
      kept.push({ expert: rel.expert, label: c.label, cell: c.cell, n: c.moments.count, mean, cov: covariance })
    }
  }
  if (kept.length === 0) throw new RoutingInputError(`no component has at least minCount = ${config.minCount} rows`)
  // Pooled within-component covariance per label: averages the cells' (noisy) estimates.
  const pooled = new Map<number, { n: number, cov: Float64Array }>()
  for (const c of kept) {
    const p = pooled.get(c.label) ?? { n: 0, cov: new Float64Array(k * k) }
    p.n += c.n
    for (let i = 0; i < k * k; i++) p.cov[i] = p.cov[i]! + c.n * c.cov[i]!
    pooled.set(c.label, p)
  }
  const total = kept.reduce((a, c) => a + c.n, 0)
  const components = kept.map((c): GaussianComponent => {
    const p = pooled.get(c.label)!
    const cov = c.cov.map((v, i) => (1 - config.tieAlpha) * v + config.tieAlpha * p.cov[i]! / p.n)
    const { values, vectors } = symmetricEigen(cov, k)
    let mean = 0
    for (let j = 0; j < k; j++) mean += Math.max(values[j]!, 0) / k
    const invSqrtEigenvalues = new Float64Array(k)
    let logDet = 0
    for (let j = 0; j < k; j++) {
      const lam = Math.max((1 - config.shrink) * Math.max(values[j]!, 0) + config.shrink * mean, config.eigenFloor)
      invSqrtEigenvalues[j] = 1 / Math.sqrt(lam)
      logDet += Math.log(lam)
    }
    return { expert: c.expert, label: c.label, cell: c.cell, logPrior: Math.log(c.n / total), mean: c.mean, eigenvectors: vectors, invSqrtEigenvalues, logDet }
  })
  return { experts, projection, components }
}

/** n × experts log-scores for already projected rows (n × k); -Infinity for an expert without components. */
export function scoreProjected (router: DensityRouter, z: Float64Array, n: number): Float64Array {
  const k = router.projection.dim
  if (z.length !== n * k) throw new RoutingInputError(`projected rows hold ${z.length} values, expected ${n} × ${k}`)
  const E = router.experts
  const out = new Float64Array(n * E).fill(-Infinity)
  const d = new Float64Array(k)
  for (let r = 0; r < n; r++) {
    for (const c of router.components) {
      for (let i = 0; i < k; i++) d[i] = z[r * k + i]! - c.mean[i]!
      let q = 0
      for (let j = 0; j < k; j++) {
        let u = 0
        for (let i = 0; i < k; i++) u += d[i]! * c.eigenvectors[i * k + j]!
        u *= c.invSqrtEigenvalues[j]!
        q += u * u
      }
      const ll = c.logPrior - 0.5 * c.logDet - 0.5 * q
      const o = r * E + c.expert
      const a = out[o]!
      // log(e^a + e^ll) without overflow.
      out[o] = a === -Infinity ? ll : Math.max(a, ll) + Math.log1p(Math.exp(-Math.abs(a - ll)))
    }
  }
  return out
}

/** n × experts log-scores for raw rows (n × inputDim). */
export function scoreRows (router: DensityRouter, rows: ArrayLike<number>, n: number): Float64Array {
  return scoreProjected(router, project(router.projection, rows, n), n)
}

export interface GateOptions {
  /** Experts that may receive weight per row (the k best allowed scores). */
  topK: number
  /** Experts opted out of this assembly: they get gate 0 whatever their score. */
  optOut?: ReadonlySet<number>
}

/** Gates (n × experts, rows sum to 1) for model.forward: softmax over each row's top-k allowed scores. */
export function gatesFromScores (scores: Float64Array, n: number, experts: number, options: GateOptions): Float32Array {
  if (scores.length !== n * experts) throw new RoutingInputError(`scores hold ${scores.length} values, expected ${n} × ${experts}`)
  const optOut = options.optOut ?? new Set<number>()
  const allowed = Array.from({ length: experts }, (_, e) => e).filter(e => !optOut.has(e))
  if (allowed.length === 0) throw new RoutingInputError(`every one of the ${experts} experts is opted out`)
  if (!Number.isInteger(options.topK) || options.topK < 1) throw new RoutingInputError(`topK must be an integer >= 1, got ${options.topK}`)
  const k = Math.min(options.topK, allowed.length)
  const gates = new Float32Array(n * experts)
  for (let r = 0; r < n; r++) {
    // Ties break toward the lower expert index, so gates are a pure function of the scores.
    const top = [...allowed].sort((a, b) => (scores[r * experts + b]! - scores[r * experts + a]!) || a - b).slice(0, k)
    const best = scores[r * experts + top[0]!]!
    if (best === -Infinity) {
      // No allowed expert has a density here: spread the row evenly rather than invent a winner.
      for (const e of top) gates[r * experts + e] = 1 / top.length
      continue
    }
    let sum = 0
    const w = top.map(e => { const v = Math.exp(scores[r * experts + e]! - best); sum += v; return v })
    top.forEach((e, i) => { gates[r * experts + e] = w[i]! / sum })
  }
  return gates
}
