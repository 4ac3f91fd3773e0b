import { describe, expect, it } from 'vitest'
import { createBatchSource, subset } from '../node/data/batches.ts'
import type { LabeledData } from '../node/data/types.ts'

// 10 rows of dim 2: row i is [i, -i], label i % 3.
const data: LabeledData = {
  x: Float32Array.from({ length: 20 }, (_, k) => (k % 2 === 0 ? k / 2 : -(k - 1) / 2)),
  y: Int32Array.from({ length: 10 }, (_, i) => i % 3),
  n: 10,
  dim: 2,
  numClasses: 3
}

describe('batch sources', () => {
  it('subset copies the chosen rows in order', () => {
    const s = subset(data, [7, 2])
    expect(s).toEqual({ x: Float32Array.from([7, -7, 2, -2]), y: Int32Array.from([1, 2]), n: 2, dim: 2, numClasses: 3 })
    s.x[0] = 99
    expect(data.x[14]).toBe(7)
  })

  it('visits every row exactly once per epoch, keeps x and y together, and reshuffles each epoch', () => {
    const src = createBatchSource(data, { seed: 11 })
    expect(src.size).toBe(10)
    const epochs: number[][] = []
    for (let e = 0; e < 3; e++) {
      const b = src.next(10)
      const rows = Array.from({ length: 10 }, (_, i) => b.x[2 * i]!)
      for (let i = 0; i < 10; i++) {
        expect(b.x[2 * i + 1]).toBe(-rows[i]!)
        expect(b.y[i]).toBe(rows[i]! % 3)
      }
      expect([...rows].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      epochs.push(rows)
    }
    expect(epochs[1]).not.toEqual(epochs[0])
    expect(epochs[2]).not.toEqual(epochs[1])
    expect(src.epoch).toBe(2)
  })

  it('is a function of its seed, fills batches across an epoch boundary, and honours indices', () => {
    const rows = (seed: number, k: number, size: number, indices?: number[]): number[] => {
      const src = createBatchSource(data, indices === undefined ? { seed } : { seed, indices })
      const out: number[] = []
      for (let i = 0; i < k; i++) {
        const b = src.next(size)
        expect(b.size).toBe(size)
        for (let j = 0; j < size; j++) out.push(b.x[2 * j]!)
      }
      return out
    }
    expect(rows(5, 4, 3)).toEqual(rows(5, 4, 3))
    expect(rows(5, 4, 3)).not.toEqual(rows(6, 4, 3))
    // Batches of 3 over 10 rows: the 4th batch takes 1 row of epoch 1 and 2 of epoch 2.
    const first10 = rows(5, 4, 3).slice(0, 10)
    expect(new Set(first10).size).toBe(10)
    const sub = rows(5, 5, 4, [1, 3, 5])
    expect(new Set(sub)).toEqual(new Set([1, 3, 5]))
    expect(createBatchSource(data, { seed: 1, indices: [4, 4] }).size).toBe(2)
  })

  it('refuses bad arguments with named errors', () => {
    expect(() => subset(data, [10])).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError', message: 'index 10 at position 0 is outside the data (n = 10)' }))
    expect(() => createBatchSource(data, { seed: 1, indices: [] })).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError', message: 'a batch source needs at least one example' }))
    expect(() => createBatchSource(data, { seed: 1 }).next(0)).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError', message: 'batch size must be a positive integer, got 0' }))
  })
})
