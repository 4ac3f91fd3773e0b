import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { epsilonForRho, noiseForBudget, releaseMoments, rhoForEpsilon, rhoOfRelease } from '../coordinator/routing/dp.ts'
import { DEFAULT_SHARES } from '../coordinator/routing/config.ts'
import { symmetricEigen, topEigen } from '../coordinator/routing/linalg.ts'
import { addMoments, emptyMoments, meanAndCovariance, packedIndex, packedLength, rowMoments } from '../coordinator/routing/moments.ts'

describe('symmetric eigen-decomposition', () => {
  it('solves a 2 × 2 case exactly', () => {
    const { values, vectors } = symmetricEigen(Float64Array.of(2, 1, 1, 2), 2)
    expect(Array.from(values)).toEqual([expect.closeTo(3, 12), expect.closeTo(1, 12)])
    expect(Math.abs(vectors[0]!)).toBeCloseTo(Math.SQRT1_2, 12)
    expect(vectors[0]! * vectors[2]!).toBeCloseTo(0.5, 12) // first eigenvector is ±(1, 1)/√2
  })

  it('reconstructs a random 7 × 7 symmetric matrix to 1e-10', () => {
    const rng = createSeededRandom(3)
    const n = 7
    const a = new Float64Array(n * n)
    for (let i = 0; i < n; i++) for (let j = i; j < n; j++) a[i * n + j] = a[j * n + i] = rng.normal()
    const { values, vectors } = symmetricEigen(a, n)
    for (let j = 1; j < n; j++) expect(values[j]!).toBeLessThanOrEqual(values[j - 1]!)
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0
        for (let m = 0; m < n; m++) s += vectors[i * n + m]! * values[m]! * vectors[j * n + m]!
        expect(Math.abs(s - a[i * n + j]!)).toBeLessThan(1e-10)
      }
    }
  })

  it('finds the leading eigenpairs of a large matrix by subspace iteration', () => {
    const n = 60
    const a = new Float64Array(n * n)
    // Diagonal 1..60 placed in a shuffled order: the top 3 are 60, 59, 58 on known axes.
    const order = Array.from({ length: n }, (_, i) => (i * 37) % n)
    order.forEach((v, i) => { a[i * n + i] = v + 1 })
    const { values, vectors } = topEigen(a, n, 3, createSeededRandom(1), 200)
    expect(Array.from(values).map(v => +v.toFixed(6))).toEqual([60, 59, 58])
    for (let j = 0; j < 3; j++) {
      const axis = order.indexOf(59 - j)
      expect(Math.abs(vectors[axis * 3 + j]!)).toBeCloseTo(1, 6)
    }
  })
})

describe('moments', () => {
  it('sums clipped rows exactly into count, sum and the packed outer product', () => {
    // Row 2 has norm 5 and is clipped to norm 2.5: (1.5, 2).
    const m = rowMoments(Float32Array.of(1, 0, 0, 2, 3, 4), 3, 2, 2.5)
    expect(m.count).toBe(3)
    expect(Array.from(m.sum)).toEqual([2.5, 4])
    expect(packedLength(2)).toBe(3)
    expect(Array.from(m.outer)).toEqual([1 + 2.25, 3, 4 + 4]) // xx, xy, yy
    expect(packedIndex(3, 1, 2)).toBe(4)
  })

  it('adds across sites and yields the pooled mean and covariance', () => {
    const a = rowMoments(Float64Array.of(0, 0, 2, 0), 2, 2, 10)
    const b = rowMoments(Float64Array.of(0, 2, 2, 2), 2, 2, 10, i => i >= 0)
    const { mean, covariance } = meanAndCovariance(addMoments([a, b]))
    expect(Array.from(mean)).toEqual([1, 1])
    expect(Array.from(covariance)).toEqual([1, 0, 0, 1])
  })

  it('refuses mismatched shapes with named errors', () => {
    expect(() => rowMoments(new Float32Array(5), 2, 3, 1)).toThrow(expect.objectContaining({ name: 'RoutingInputError', message: 'rows hold 5 values, expected n × dim = 2 × 3' }))
    expect(() => addMoments([emptyMoments(2), emptyMoments(3)])).toThrow('moments of dimension 3 cannot be added to dimension 2')
    expect(() => rowMoments(Float32Array.of(NaN), 1, 1, 1)).toThrow('row 0 has a non-finite value at column 0')
  })
})

describe('differential privacy of released moments', () => {
  it('converts between zCDP rho and (epsilon, delta) both ways', () => {
    const rho = rhoForEpsilon(1, 1e-5)
    expect(rho).toBeCloseTo(0.020823, 5)
    expect(epsilonForRho(rho, 1e-5)).toBeCloseTo(1, 12)
    expect(epsilonForRho(rhoForEpsilon(8, 1e-5), 1e-5)).toBeCloseTo(8, 12)
  })

  it('spends exactly the budget it is given across both releases', () => {
    const { global, components } = noiseForBudget(8, 1e-5, DEFAULT_SHARES)
    expect(epsilonForRho(rhoOfRelease(global) + rhoOfRelease(components), 1e-5)).toBeCloseTo(8, 10)
    expect(components.outer).toBeLessThan(global.outer) // most of the budget goes to the component covariances
    expect(() => noiseForBudget(8, 1e-5, { ...DEFAULT_SHARES, global: { count: 0.5, sum: 0.04, outer: 0.1 } }))
      .toThrow(expect.objectContaining({ name: 'RoutingInputError', message: expect.stringContaining('budget shares must be positive and sum to 1') }))
  })

  it('adds Gaussian noise of std z × sensitivity (n = 5050 entries, 6 % tolerance ≈ 4 sigma)', () => {
    const dim = 100
    const z = { count: 2, sum: 3, outer: 0.5 }
    const clip = 4
    const r = releaseMoments(emptyMoments(dim), clip, z, createSeededRandom(11))
    const std = (xs: Float64Array): number => Math.sqrt(xs.reduce((a, v) => a + v * v, 0) / xs.length)
    expect(std(r.outer) / (0.5 * clip * clip)).toBeGreaterThan(0.94)
    expect(std(r.outer) / (0.5 * clip * clip)).toBeLessThan(1.06)
    expect(Math.abs(std(r.sum) / (3 * clip) - 1)).toBeLessThan(0.3) // 100 entries: ~4 sigma is 28 %
    expect(r.count).not.toBe(0)
    const again = releaseMoments(emptyMoments(dim), clip, z, createSeededRandom(11))
    expect(Array.from(again.outer)).toEqual(Array.from(r.outer))
  })
})
