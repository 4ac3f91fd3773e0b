/**
 * Renyi-DP accountant for the Poisson-subsampled Gaussian mechanism
 * (Mironov, Talwar, Zhang 2019, "Renyi Differential Privacy of the Sampled
 * Gaussian Mechanism", Section 3.3), with the conversion to (eps, delta) of
 * Balle et al. 2020 ("Hypothesis Testing Interpretations and Renyi
 * Differential Privacy", Theorem 21):
 *
 *   eps(alpha) = rdp(alpha) + log1p(-1/alpha) - log(delta * alpha) / (alpha - 1)
 *
 * minimised over the orders. This is the conversion TensorFlow Privacy's
 * dp_accounting (compute_epsilon) and Opacus (get_privacy_spent) use, and it
 * is never looser than the classic rdp - log(delta) / (alpha - 1). Like
 * dp_accounting, orders <= 1.01 are skipped (the bound is unstable there)
 * and eps is 0 when the KL bound delta >= sqrt(1 - exp(-rdp)) already holds.
 */
import { InvalidArgumentError } from '../errors.ts'
import { logAdd, logErfc, logSub } from './special.ts'

/** The default orders of TF Privacy and Opacus: 1.1, 1.2, ..., 10.9, then 12..63. */
export const DEFAULT_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 52 }, (_, i) => 12 + i)
])

function checkMechanism (q: number, z: number): void {
  if (!(q >= 0 && q <= 1)) throw new InvalidArgumentError(`sample rate must be in [0, 1], got ${q}`)
  if (!(z >= 0) || !Number.isFinite(z)) throw new InvalidArgumentError(`noise multiplier must be a finite number >= 0, got ${z}`)
}

function checkOrder (alpha: number): void {
  if (!(alpha > 1)) throw new InvalidArgumentError(`RDP orders must be > 1, got ${alpha}`)
}

/** log(A_alpha) for integer alpha: a finite binomial sum. */
function logAInt (q: number, sigma: number, alpha: number): number {
  let logA = -Infinity
  let logBinom = 0
  const logQ = Math.log(q)
  const log1mQ = Math.log1p(-q)
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log(alpha - i + 1) - Math.log(i)
    const s = logBinom + i * logQ + (alpha - i) * log1mQ + (i * i - i) / (2 * sigma * sigma)
    logA = logAdd(logA, s)
  }
  return logA
}

/**
 * log(A_alpha) for fractional alpha: the integral split at z0 into two
 * series of erfc terms, summed until both terms fall below e^-30.
 */
function logAFrac (q: number, sigma: number, alpha: number): number {
  let logA0 = -Infinity
  let logA1 = -Infinity
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5
  const logQ = Math.log(q)
  const log1mQ = Math.log1p(-q)
  const sqrt2Sigma = Math.SQRT2 * sigma
  // |binom(alpha, i)| and its sign, built up term by term.
  let logAbsBinom = 0
  let sign = 1
  for (let i = 0; i < 100_000; i++) {
    if (i > 0) {
      const f = alpha - i + 1
      logAbsBinom += Math.log(Math.abs(f)) - Math.log(i)
      if (f < 0) sign = -sign
    }
    const j = alpha - i
    const logT0 = logAbsBinom + i * logQ + j * log1mQ
    const logT1 = logAbsBinom + j * logQ + i * log1mQ
    const logE0 = Math.log(0.5) + logErfc((i - z0) / sqrt2Sigma)
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / sqrt2Sigma)
    const logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0
    const logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1
    if (sign > 0) {
      logA0 = logAdd(logA0, logS0)
      logA1 = logAdd(logA1, logS1)
    } else {
      logA0 = logSub(logA0, logS0)
      logA1 = logSub(logA1, logS1)
    }
    if (Math.max(logS0, logS1) < -30) break
  }
  return logAdd(logA0, logA1)
}

/** RDP at one order of one step of the sampled Gaussian mechanism (sensitivity 1, noise z). */
export function rdpAtOrder (q: number, z: number, alpha: number): number {
  checkMechanism(q, z)
  if (alpha === Infinity) return q === 0 ? 0 : Infinity
  checkOrder(alpha)
  if (q === 0) return 0
  if (z === 0) return Infinity
  if (q === 1) return alpha / (2 * z * z)
  const logA = Number.isInteger(alpha) ? logAInt(q, z, alpha) : logAFrac(q, z, alpha)
  return logA / (alpha - 1)
}

/** RDP of `steps` compositions of the Poisson-subsampled Gaussian mechanism, at each order. */
export function rdpGaussian (q: number, z: number, orders: readonly number[] = DEFAULT_ORDERS, steps = 1): number[] {
  if (!Number.isInteger(steps) || steps < 0) throw new InvalidArgumentError(`steps must be an integer >= 0, got ${steps}`)
  return orders.map(a => steps === 0 ? 0 : rdpAtOrder(q, z, a) * steps)
}

function checkCurve (rdp: readonly number[], orders: readonly number[]): void {
  if (rdp.length !== orders.length || orders.length === 0) throw new InvalidArgumentError(`need one RDP value per order: ${rdp.length} values for ${orders.length} orders`)
  for (const r of rdp) if (!(r >= 0)) throw new InvalidArgumentError(`RDP values must be >= 0, got ${r}`)
  for (const a of orders) if (!(a >= 1)) throw new InvalidArgumentError(`RDP orders must be >= 1, got ${a}`)
}

export interface EpsilonAtOrder {
  epsilon: number
  /** The order at which the bound is tightest. */
  order: number
}

/** (eps, delta)-DP from an RDP curve (Balle et al. 2020, Theorem 21). */
export function epsilonFromRdp (rdp: readonly number[], orders: readonly number[], delta: number): EpsilonAtOrder {
  checkCurve(rdp, orders)
  if (!(delta > 0 && delta < 1)) throw new InvalidArgumentError(`delta must be in (0, 1), got ${delta}`)
  let best: EpsilonAtOrder = { epsilon: Infinity, order: orders[0]! }
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k]!
    const r = rdp[k]!
    let eps: number
    if (delta * delta + Math.expm1(-r) > 0) eps = 0 // delta >= sqrt(1 - e^-KL)
    else if (a > 1.01) eps = r + Math.log1p(-1 / a) - Math.log(delta * a) / (a - 1)
    else eps = Infinity
    if (eps < best.epsilon) best = { epsilon: eps, order: a }
  }
  return { epsilon: Math.max(0, best.epsilon), order: best.order }
}

/** The delta that goes with `epsilon` for an RDP curve (the same theorem, solved for delta; min with the KL bound). */
export function deltaFromRdp (rdp: readonly number[], orders: readonly number[], epsilon: number): { delta: number, order: number } {
  checkCurve(rdp, orders)
  if (!(epsilon >= 0)) throw new InvalidArgumentError(`epsilon must be >= 0, got ${epsilon}`)
  let best = { logDelta: Infinity, order: orders[0]! }
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k]!
    const r = rdp[k]!
    let logDelta = r === 0 ? -Infinity : 0.5 * Math.log1p(-Math.exp(-r))
    if (a > 1.01) logDelta = Math.min(logDelta, (a - 1) * (r - epsilon + Math.log1p(-1 / a)) - Math.log(a))
    if (logDelta < best.logDelta) best = { logDelta, order: a }
  }
  return { delta: Math.min(Math.exp(best.logDelta), 1), order: best.order }
}

export interface GaussianAccounting {
  noiseMultiplier: number
  /** Poisson sampling rate (1 when every record / every site takes part in each step). */
  sampleRate: number
  steps: number
  delta: number
  orders?: readonly number[]
}

/** eps after `steps` of the subsampled Gaussian mechanism at `delta`. */
export function computeEpsilon (p: GaussianAccounting): EpsilonAtOrder {
  const orders = p.orders ?? DEFAULT_ORDERS
  return epsilonFromRdp(rdpGaussian(p.sampleRate, p.noiseMultiplier, orders, p.steps), orders, p.delta)
}

/**
 * The smallest noise multiplier (to `tolerance` in eps) that keeps eps at
 * or below `targetEpsilon`: the doubling-then-bisection search of Opacus's
 * get_noise_multiplier, so its published values are reproduced exactly.
 */
export function noiseMultiplierFor (p: Omit<GaussianAccounting, 'noiseMultiplier'> & { targetEpsilon: number, tolerance?: number }): number {
  const tol = p.tolerance ?? 0.01
  if (!(p.targetEpsilon > 0)) throw new InvalidArgumentError(`target epsilon must be > 0, got ${p.targetEpsilon}`)
  const eps = (z: number): number => computeEpsilon({ ...p, noiseMultiplier: z }).epsilon
  let low = 0
  let high = 10
  let epsHigh = Infinity
  while (epsHigh > p.targetEpsilon) {
    high *= 2
    epsHigh = eps(high)
    if (high > 1e6) throw new InvalidArgumentError(`no noise multiplier up to 1e6 reaches eps ${p.targetEpsilon}: the budget is too small`)
  }
  while (p.targetEpsilon - epsHigh > tol) {
    const mid = (low + high) / 2
    const e = eps(mid)
    if (e < p.targetEpsilon) {
      high = mid
      epsHigh = e
    } else {
      low = mid
    }
  }
  return high
}
