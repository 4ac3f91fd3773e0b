/**
 * zero-Concentrated DP (rho-zCDP) bookkeeping for the MST generator.
 *
 * MST composes its three phases in zCDP, where the Gaussian mechanism and the
 * exponential mechanism both have simple closed forms and costs just add. The
 * site's ledger speaks (eps, delta), so a run converts (eps, delta) to the
 * largest rho whose zCDP guarantee implies (eps, delta)-DP.
 *
 * The conversion is the tight one of Canonne, Kamath and Steinke (2020,
 * "The Discrete Gaussian for Differential Privacy", Prop. 12 / Cor. 13):
 * rho-zCDP gives (eps, delta)-DP for every alpha > 1 with
 *   delta = exp((alpha-1)(alpha*rho - eps) + alpha*ln(1 - 1/alpha)) / (alpha - 1).
 * We minimise over alpha (the log of that expression is convex in alpha, so a
 * bisection on its derivative finds the minimum) and then bisect on rho.
 * It never gives a smaller rho than the classic Bun-Steinke bound
 * eps = rho + 2*sqrt(rho*ln(1/delta)), which is exported for comparison.
 *
 * Neighbouring datasets differ by adding or removing one row, so a count
 * marginal has L2 sensitivity 1.
 */
import { InvalidArgumentError } from '../errors.ts'

/** Smallest delta such that rho-zCDP implies (eps, delta)-DP (CKS20). */
export function cdpDelta (rho: number, eps: number): number {
  if (!(rho >= 0) || !(eps >= 0)) throw new InvalidArgumentError(`cdpDelta needs rho >= 0 and eps >= 0, got rho=${rho}, eps=${eps}`)
  if (rho === 0) return 0
  // d/d alpha of the log of the bound: (2 alpha - 1) rho - eps + ln(1 - 1/alpha).
  // It tends to -inf as alpha -> 1 and is positive at the upper end below.
  let lo = 1 + 1e-12
  let hi = (eps + 1) / (2 * rho) + 2
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2
    const slope = (2 * mid - 1) * rho - eps + Math.log1p(-1 / mid)
    if (slope < 0) lo = mid
    else hi = mid
  }
  return Math.min(1, deltaAtAlpha(rho, eps, (lo + hi) / 2))
}

/** The CKS20 bound at one alpha: any alpha > 1 gives a valid delta. */
export function deltaAtAlpha (rho: number, eps: number, alpha: number): number {
  const logDelta = (alpha - 1) * (alpha * rho - eps) + alpha * Math.log1p(-1 / alpha) - Math.log(alpha - 1)
  return Math.exp(logDelta)
}

/** The largest rho (to 1e-12 relative) whose zCDP guarantee implies (eps, delta)-DP. */
export function rhoFromEpsDelta (eps: number, delta: number): number {
  if (!(eps > 0) || !Number.isFinite(eps)) throw new InvalidArgumentError(`epsilon must be a finite number > 0, got ${eps}`)
  if (!(delta > 0 && delta < 1)) throw new InvalidArgumentError(`delta must be in (0, 1), got ${delta}`)
  let lo = 0
  let hi = Math.max(1, eps)
  while (cdpDelta(hi, eps) <= delta) hi *= 2
  // cdpDelta is increasing in rho; keep `lo` on the safe side throughout.
  for (let i = 0; i < 200 && hi - lo > 1e-12 * hi; i++) {
    const mid = (lo + hi) / 2
    if (cdpDelta(mid, eps) <= delta) lo = mid
    else hi = mid
  }
  return lo
}

/** Bun and Steinke (2016): rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP; inverted for rho. */
export function rhoFromEpsDeltaClassic (eps: number, delta: number): number {
  const l = Math.log(1 / delta)
  return (Math.sqrt(l + eps) - Math.sqrt(l)) ** 2
}

/** Gaussian noise scale for `queries` queries of L2 sensitivity 1 that together cost `rho`. */
export function gaussianSigma (rho: number, queries: number): number {
  if (!(rho > 0)) throw new InvalidArgumentError(`rho must be > 0, got ${rho}`)
  return Math.sqrt(queries / (2 * rho))
}

/**
 * The exponential mechanism with parameter eps is eps^2/8-zCDP (bounded-range
 * analysis, Cesar and Rogers 2021). Split `rho` over `rounds` selections.
 */
export function exponentialEpsilon (rho: number, rounds: number): number {
  if (!(rho > 0) || !(rounds >= 1)) throw new InvalidArgumentError(`exponentialEpsilon needs rho > 0 and rounds >= 1, got ${rho}, ${rounds}`)
  return Math.sqrt(8 * rho / rounds)
}
