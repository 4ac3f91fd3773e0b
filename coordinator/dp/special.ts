/**
 * The few special functions the RDP accountant needs, in float64, written
 * for accuracy far into the tails: log(erfc(x)) for x up to thousands (the
 * fractional-order RDP sum evaluates erfc at arguments that grow with the
 * order), and addition/subtraction in log space.
 */

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI)
const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI)

/**
 * erf(x) for 0 <= x < 2 by the series with positive terms
 *   erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)),
 * which has no cancellation (unlike the alternating Taylor series).
 */
function erfSeries (x: number): number {
  let term = x
  let sum = x
  const x2 = x * x
  for (let n = 1; n < 200; n++) {
    term *= 2 * x2 / (2 * n + 1)
    sum += term
    if (term < sum * 1e-17) break
  }
  return TWO_OVER_SQRT_PI * Math.exp(-x2) * sum
}

/**
 * log of the continued fraction K(x) with erfc(x) = exp(-x^2)/sqrt(pi) * K(x),
 *   K(x) = 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))),
 * evaluated by the modified Lentz method; it converges fast for x >= 2.
 */
function logErfcFraction (x: number): number {
  const tiny = 1e-300
  let f = x
  let c = x
  let d = 0
  for (let k = 1; k < 5000; k++) {
    const a = k / 2
    d = x + a * d
    if (d === 0) d = tiny
    c = x + a / c
    if (c === 0) c = tiny
    d = 1 / d
    const delta = c * d
    f *= delta
    if (Math.abs(delta - 1) < 1e-16) break
  }
  return -Math.log(f)
}

/** erfc(x) in float64 (underflows to 0 beyond x ~ 26.5; use logErfc there). */
export function erfc (x: number): number {
  if (Number.isNaN(x)) return NaN
  if (x < 0) return 2 - erfc(-x)
  if (x < 2) return 1 - erfSeries(x)
  return Math.exp(-x * x - LOG_SQRT_PI + logErfcFraction(x))
}

/** log(erfc(x)), accurate for large positive x where erfc itself underflows. */
export function logErfc (x: number): number {
  if (Number.isNaN(x)) return NaN
  if (x === Infinity) return -Infinity
  if (x < 2) return Math.log(erfc(x))
  return -x * x - LOG_SQRT_PI + logErfcFraction(x)
}

/** log(exp(a) + exp(b)) without overflow; -Infinity stands for 0. */
export function logAdd (a: number, b: number): number {
  const hi = Math.max(a, b)
  const lo = Math.min(a, b)
  if (lo === -Infinity) return hi
  return hi + Math.log1p(Math.exp(lo - hi))
}

/** log(exp(a) - exp(b)) for a >= b; a difference that rounds to <= 0 is 0 (-Infinity). */
export function logSub (a: number, b: number): number {
  if (b === -Infinity) return a
  if (b >= a) return -Infinity
  return a + Math.log(-Math.expm1(b - a))
}
