/**
 * The accountant against published reference values:
 * - tensorflow/privacy, tensorflow_privacy/privacy/analysis/rdp_accountant_test.py
 * - google/differential-privacy, python/dp_accounting/dp_accounting/rdp/rdp_privacy_accountant_test.py
 *   (the accountant TF Privacy now delegates to)
 * - pytorch/opacus, opacus/tests/accountants_test.py
 * Each expectation uses the precision the reference test asserts.
 */
import { describe, expect, it } from 'vitest'
import { DEFAULT_ORDERS, computeEpsilon, deltaFromRdp, epsilonFromRdp, noiseMultiplierFor, rdpAtOrder, rdpGaussian } from '../coordinator/dp/rdp.ts'
import { erfc, logErfc } from '../coordinator/dp/special.ts'

/** Python's assertAlmostEqual(a, b, places): round(a - b, places) == 0. */
const almostEqual = (a: number, b: number, places = 7): void => {
  expect(Math.abs(a - b)).toBeLessThan(0.5 * 10 ** -places)
}

describe('special functions', () => {
  it('erfc and log(erfc) agree with known values across the range', () => {
    // Reference values: erfc to 16 significant digits (A&S / mpmath).
    const cases: Array<[number, number]> = [[0, 1], [0.5, 0.4795001221869535], [1, 0.15729920705028513], [2, 0.004677734981047266], [5, 1.5374597944280349e-12], [10, 2.088487583762545e-45], [-1, 1.8427007929497148]]
    for (const [x, v] of cases) expect(Math.abs(erfc(x) - v) / v).toBeLessThan(1e-13)
    // Deep in the tail erfc underflows; its log does not: log erfc(30) = -904.55...
    // (the asymptotic series -x^2 - log(x sqrt(pi)) - 1/(2x^2) + 5/(8x^4) - 37/(24x^6), next term ~1e-11 at x = 30).
    expect(logErfc(30)).toBeCloseTo(-900 - 0.5 * Math.log(Math.PI) - Math.log(30) - 0.5 / 30 ** 2 + 0.625 / 30 ** 4 - 37 / 24 / 30 ** 6, 10)
  })
})

describe('RDP of the sampled Gaussian mechanism (TF Privacy / dp_accounting reference values)', () => {
  it('q = 0 gives 0 and q = 1 gives alpha / (2 z^2)', () => {
    expect(rdpGaussian(0, 10, [20])[0]).toBe(0)
    expect(rdpGaussian(1, 10, [20])[0]).toBe(0.1)
  })

  it('compute_rdp(0.1, 2, 10, 5) = 0.07737 (places = 5)', () => {
    almostEqual(rdpGaussian(0.1, 2, [5], 10)[0]!, 0.07737, 5)
  })

  it('compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100, inf]) (TF Privacy: delta 1e-5; dp_accounting: rtol 1e-4)', () => {
    const got = rdpGaussian(0.01, 2.5, [1.5, 2.5, 5, 50, 100, Infinity], 50)
    const tfPrivacy = [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307]
    tfPrivacy.forEach((v, i) => expect(Math.abs(got[i]! - v)).toBeLessThanOrEqual(1e-5 + 1e-9))
    expect(got[5]).toBe(Infinity)
    // dp_accounting's newer test lists 6.70579741e-04 at order 1.5, 3% above the
    // exact value (checked by quadrature below): it is an upper bound there. The
    // other orders match its values to its rtol 1e-4.
    const dpAccounting = [1.08548710e-03, 2.18075656e-03, 2.38460375e-02, 1.67416308e02]
    dpAccounting.forEach((v, i) => expect(Math.abs(got[i + 1]! - v)).toBeLessThanOrEqual(1e-8 + 1e-4 * Math.abs(v)))
  })

  it('fractional orders match direct numerical integration of A_alpha (the mpmath check of both test suites)', () => {
    // A_alpha = E_{z ~ N(0, s^2)} [((1 - q) + q exp((2z - 1) / (2 s^2)))^alpha], by the midpoint rule.
    const integrate = (q: number, s: number, a: number): number => {
      let sum = 0
      const h = 2e-3
      for (let z = -40 * s; z <= 40 * s; z += h) {
        const mu0 = Math.exp(-z * z / (2 * s * s)) / (s * Math.sqrt(2 * Math.PI))
        sum += mu0 * ((1 - q) + q * Math.exp((2 * z - 1) / (2 * s * s))) ** a * h
      }
      return Math.log(sum) / (a - 1)
    }
    for (const [q, s, a] of [[0.01, 2.5, 1.5], [1e-3, 1, 2.5], [0.1, 1, 3.7], [0.01, 10, 20.5]] as const) {
      const want = integrate(q, s, a)
      expect(Math.abs(rdpAtOrder(q, s, a) - want) / want).toBeLessThan(1e-4)
    }
  })

  it('sums the RDP of two mechanisms (test_check_composition stays within its upper bound 8.509656)', () => {
    const orders = [1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 64, 256]
    const a = rdpGaussian(1e-4, 0.4, orders, 40000)
    const b = rdpGaussian(0.1, 2, orders, 100)
    const { epsilon } = epsilonFromRdp(a.map((v, i) => v + b[i]!), orders, 1e-5)
    expect(epsilon).toBeLessThanOrEqual(8.509656)
    expect(epsilon).toBeGreaterThan(7) // the classic conversion gave 8.51; the improved one is only a little tighter
  })
})

describe('RDP -> (eps, delta) conversion (Balle et al. 2020, as in dp_accounting and Opacus)', () => {
  it('pure DP: constant RDP 1.1 over orders 2..32 gives eps 1.32783806176 at order 32, and back', () => {
    const orders = Array.from({ length: 31 }, (_, i) => i + 2)
    const rdp = orders.map(() => 1.1)
    const { epsilon, order } = epsilonFromRdp(rdp, orders, 1e-5)
    almostEqual(epsilon, 1.32783806176)
    expect(order).toBe(32)
    const back = deltaFromRdp(rdp, orders, 1.32783806176)
    almostEqual(back.delta, 1e-5)
    expect(back.order).toBe(32)
  })

  it('Gaussian without sampling: z = 4.530877117 is exactly (1, 1e-6)-DP over a fine grid of orders', () => {
    const orders = Array.from({ length: 99000 }, (_, i) => 0.001 * (i + 1000)).filter(a => a > 1)
    const rdp = rdpGaussian(1, 4.530877117, orders)
    almostEqual(epsilonFromRdp(rdp, orders, 1e-6).epsilon, 1)
    almostEqual(deltaFromRdp(rdp, orders, 1).delta, 1e-6)
  })

  it('eps and delta conversions are consistent for many mechanisms (test_epsilon_delta_consistency)', () => {
    const orders = Array.from({ length: 48 }, (_, i) => i + 2)
    for (const q of [0.01, 0.1, 0.8, 1]) {
      for (const z of [0.1, 1, 10, 100]) {
        const rdp = rdpGaussian(q, z, orders)
        for (const delta of [0.1, 1e-3, 1e-5, 1e-9, 1e-12]) {
          const { epsilon } = epsilonFromRdp(rdp, orders, delta)
          const d2 = deltaFromRdp(rdp, orders, epsilon).delta
          if (epsilon === 0) expect(d2).toBeLessThanOrEqual(delta)
          else almostEqual(d2, delta)
        }
      }
    }
  })
})

describe('end-to-end epsilon (Opacus reference values)', () => {
  it('RDPAccountant: z = 1.5, q = 0.04, 90 epochs (2250 steps), delta 1e-5 -> eps 7.32911117143 (places = 7)', () => {
    const steps = Math.trunc(90 / 0.04)
    expect(steps).toBe(2250)
    almostEqual(computeEpsilon({ noiseMultiplier: 1.5, sampleRate: 0.04, steps, delta: 1e-5 }).epsilon, 7.32911117143)
  })

  it('get_noise_multiplier: eps 8, delta 1e-5, q 0.04 -> 1.416 for 90 epochs and 1.3562 for 2000 steps (places = 4)', () => {
    almostEqual(noiseMultiplierFor({ targetEpsilon: 8, delta: 1e-5, sampleRate: 0.04, steps: Math.trunc(90 / 0.04) }), 1.416, 4)
    almostEqual(noiseMultiplierFor({ targetEpsilon: 8, delta: 1e-5, sampleRate: 0.04, steps: 2000 }), 1.3562, 4)
  })

  it('eps grows with steps and shrinks with noise; default orders are those of TF Privacy and Opacus', () => {
    expect(DEFAULT_ORDERS.length).toBe(151)
    expect(DEFAULT_ORDERS[0]).toBe(1.1)
    expect(DEFAULT_ORDERS[150]).toBe(63)
    const e = (z: number, steps: number): number => computeEpsilon({ noiseMultiplier: z, sampleRate: 0.01, steps, delta: 1e-5 }).epsilon
    expect(e(1.1, 1000)).toBeLessThan(e(1.1, 2000))
    expect(e(2, 1000)).toBeLessThan(e(1.1, 1000))
  })

  it('rejects impossible inputs with named errors', () => {
    expect(() => rdpAtOrder(1.5, 1, 2)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('sample rate') }))
    expect(() => rdpAtOrder(0.1, -1, 2)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('noise multiplier') }))
    expect(() => epsilonFromRdp([1], [2], 0)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('delta') }))
    expect(() => epsilonFromRdp([1, 2], [2], 1e-5)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('one RDP value per order') }))
  })
})
