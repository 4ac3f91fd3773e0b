import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import {
  formatPartitionSummary, partitionByAttribute, partitionByLabelGroups, partitionDirichlet, partitionIid,
  partitionShards, sampleDirichlet, summarizePartition, type Partition
} from '../coordinator/partition.ts'
import { loadMnist } from '../node/data/mnist.ts'

// 200 examples, 20 of each label 0..9, interleaved.
const labels = Int32Array.from({ length: 200 }, (_, i) => (i * 7) % 10)

/** Every index 0..n-1 appears in exactly one site, and each site's list is ascending. */
function expectDisjointCover (p: Partition, n: number): void {
  const seen = new Uint8Array(n)
  for (const ix of p.indices) {
    for (let j = 0; j < ix.length; j++) {
      if (j > 0) expect(ix[j]!).toBeGreaterThan(ix[j - 1]!)
      seen[ix[j]!]!++
    }
  }
  expect(seen.every(v => v === 1)).toBe(true)
}

describe('partitioners: exact histograms for a fixed seed (42)', () => {
  it('IID: equal counts, a uniform permutation', () => {
    const p = partitionIid(200, 4, createSeededRandom(42), labels)
    expect(p.summary).toEqual({
      counts: [50, 50, 50, 50],
      labelHistogram: [[4, 7, 6, 3, 7, 4, 6, 7, 1, 5], [5, 5, 9, 6, 5, 5, 3, 3, 6, 3], [4, 5, 3, 5, 4, 6, 8, 6, 3, 6], [7, 3, 2, 6, 4, 5, 3, 4, 10, 6]]
    })
    expectDisjointCover(p, 200)
    const uneven = partitionIid(10, 3, createSeededRandom(1))
    expect(uneven.summary).toEqual({ counts: [4, 3, 3], labelHistogram: [[], [], []] })
  })

  it('Dirichlet(0.5): label skew', () => {
    const p = partitionDirichlet(labels, 4, 0.5, createSeededRandom(42))
    expect(p.summary).toEqual({
      counts: [29, 56, 71, 44],
      labelHistogram: [[1, 7, 5, 2, 4, 1, 4, 1, 3, 1], [10, 0, 12, 2, 5, 11, 11, 4, 1, 0], [9, 13, 1, 6, 5, 1, 3, 11, 4, 18], [0, 0, 2, 10, 6, 7, 2, 4, 12, 1]]
    })
    expect(p.indices.map(a => [...a.slice(0, 5)])).toEqual([[18, 20, 24, 26, 27], [0, 5, 6, 10, 15], [1, 2, 3, 4, 7], [9, 11, 12, 14, 21]])
    expectDisjointCover(p, 200)
  })

  it('pathological shards: each site gets two whole single-label shards', () => {
    const p = partitionShards(labels, 5, 2, createSeededRandom(42))
    expect(p.summary).toEqual({
      counts: [40, 40, 40, 40, 40],
      labelHistogram: [[0, 0, 0, 20, 0, 0, 0, 0, 20, 0], [0, 20, 20, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 20, 0, 20, 0, 0, 0], [20, 0, 0, 0, 0, 20, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 20, 0, 20]]
    })
    expectDisjointCover(p, 200)
  })

  it('by attribute: one site per value, in value order', () => {
    const regions = Array.from({ length: 200 }, (_, i) => ['north', 'south', 'east'][i % 3]!)
    const p = partitionByAttribute(regions, labels)
    expect(p.sites).toEqual(['east', 'north', 'south'])
    expect(p.summary).toEqual({
      counts: [66, 67, 67],
      labelHistogram: [[6, 6, 6, 6, 7, 7, 7, 7, 7, 7], [7, 7, 7, 7, 7, 7, 7, 6, 6, 6], [7, 7, 7, 7, 6, 6, 6, 7, 7, 7]]
    })
    expect([...p.indices[0]!.slice(0, 3)]).toEqual([2, 5, 8])
    expectDisjointCover(p, 200)
    expect(formatPartitionSummary(p.summary, p.sites).split('\n')[0]).toBe('east: 66 examples [6 6 6 6 7 7 7 7 7 7]')
  })

  it('is a function of the seed', () => {
    const a = partitionDirichlet(labels, 4, 0.5, createSeededRandom(7))
    expect(partitionDirichlet(labels, 4, 0.5, createSeededRandom(7))).toEqual(a)
    expect(partitionDirichlet(labels, 4, 0.5, createSeededRandom(8)).summary).not.toEqual(a.summary)
    expect(partitionShards(labels, 5, 2, createSeededRandom(8)).summary).not.toEqual(partitionShards(labels, 5, 2, createSeededRandom(42)).summary)
  })
})

describe('partitioners on real MNIST labels', () => {
  it('label groups: the flagship five-site split, each site exactly two digits', async () => {
    const test = await loadMnist({ split: 'test' })
    const p = partitionByLabelGroups(test.y, [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]])
    // From the canonical test histogram [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009].
    expect(p.summary.counts).toEqual([2115, 2042, 1874, 1986, 1983])
    expect(p.summary.labelHistogram[2]).toEqual([0, 0, 0, 0, 982, 892, 0, 0, 0, 0])
    expectDisjointCover(p, 10_000)
  })

  it('FedAvg pathological: 100 clients x 2 shards of 300 from the 60,000 training labels', async () => {
    const train = await loadMnist({ split: 'train' })
    const p = partitionShards(train.y, 100, 2, createSeededRandom(1))
    expect(new Set(p.summary.counts)).toEqual(new Set([600]))
    // A 300-example shard of label-sorted data spans at most two labels.
    const labelsPerSite = p.summary.labelHistogram.map(h => h.filter(c => c > 0).length)
    expect(Math.max(...labelsPerSite)).toBeLessThanOrEqual(4)
    expect(labelsPerSite.filter(k => k <= 2).length).toBeGreaterThanOrEqual(80)
    const total = p.summary.labelHistogram.reduce((acc, h) => acc.map((v, c) => v + h[c]!), new Array<number>(10).fill(0))
    expect(total).toEqual([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
  })
})

describe('partitioner details', () => {
  it('label groups deal a shared label round-robin and leave unnamed labels out', () => {
    const p = partitionByLabelGroups([0, 0, 0, 1, 2], [[0], [0, 1]])
    expect(p.indices.map(a => [...a])).toEqual([[0, 2], [1, 3]])
    expect(p.summary).toEqual({ counts: [2, 2], labelHistogram: [[2, 0, 0], [1, 1, 0]] })
  })

  it('Dirichlet alpha controls skew: top-class share per site, 10 sites over 2,000 balanced labels', () => {
    const many = Int32Array.from({ length: 2000 }, (_, i) => i % 10)
    const topShare = (p: Partition): number => p.summary.labelHistogram
      .map((h, s) => Math.max(...h) / p.summary.counts[s]!).reduce((a, b) => a + b, 0) / p.indices.length
    const skewed = topShare(partitionDirichlet(many, 10, 0.1, createSeededRandom(3)))
    const flat = topShare(partitionDirichlet(many, 10, 1000, createSeededRandom(3)))
    // IID would give ~0.1 plus sampling noise; alpha = 0.1 concentrates each site on a few labels.
    expect(flat).toBeLessThan(0.2)
    expect(skewed).toBeGreaterThan(0.5)
  })

  it('samples a Dirichlet that sums to 1 even for tiny alpha', () => {
    const rng = createSeededRandom(5)
    for (const alpha of [1e-3, 0.1, 1, 50]) {
      const p = sampleDirichlet(8, alpha, rng)
      expect(p.every(v => v >= 0 && Number.isFinite(v))).toBe(true)
      expect(Math.abs(p.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-12)
    }
  })

  it('refuses bad input with named errors', () => {
    const rng = createSeededRandom(1)
    expect(() => partitionIid(3, 4, rng)).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError', message: 'cannot split 3 examples across 4 sites' }))
    expect(() => partitionDirichlet(labels, 4, 0, rng)).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError', message: 'alpha must be a positive finite number, got 0' }))
    expect(() => partitionShards([0, 1, 2], 2, 2, rng)).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError', message: 'cannot cut 3 examples into 4 shards' }))
    expect(() => partitionShards([0, -1, 2, 3], 2, 1, rng)).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError', message: 'label at 1 must be a non-negative integer, got -1' }))
    expect(() => partitionByLabelGroups([0, 1], [[0], []])).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError', message: 'group 1 is empty' }))
    expect(() => partitionByAttribute(['a', 'b'], [0])).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError' }))
    expect(() => summarizePartition([0, 1], [Int32Array.from([0, 1])], 1)).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError', message: 'index 1 has label 1, outside 0..0' }))
    expect(() => partitionDirichlet(labels, 50, 0.01, rng, { minSize: 5, maxTries: 3 })).toThrowError(expect.objectContaining({
      name: 'PartitionInfeasibleError',
      message: 'Dirichlet(0.01) over 50 sites left a site with fewer than 5 examples in 3 draws; raise alpha or lower minSize'
    }))
  })
})
