/**
 * A site in a child process reads only its own rows (loadSiteShare); they
 * must be exactly the rows the inline simulator hands that site out of the
 * whole training set (loadSimData), for every partitioner, so both execution
 * modes train on the same data.
 */
import { describe, expect, it } from 'vitest'
import { loadSiteShare, loadSimData } from '../sim/data.ts'
import { parseTopology, type TopologyInput } from '../sim/topology.ts'

const sites = ['a', 'b', 'c', 'd'].map((name, i) => ({ name, labels: i < 3 ? [3 * i, 3 * i + 1, 3 * i + 2] : [9] }))

describe('loadSiteShare', () => {
  for (const partition of [{ kind: 'labels' }, { kind: 'shards', shardsPerSite: 2 }, { kind: 'dirichlet', alpha: 0.5 }, { kind: 'iid' }] as const) {
    it(`gives each site exactly its rows of loadSimData (${partition.kind})`, async () => {
      const topology = parseTopology({ name: 'share', seed: 5, data: { partition, trainLimit: 2000, testLimit: 10 }, sites } satisfies TopologyInput)
      const all = await loadSimData(topology)
      for (let i = 0; i < sites.length; i++) {
        const own = await loadSiteShare(topology, i)
        expect(own.n).toBe(all.sites[i]!.n)
        expect(own.n).toBeGreaterThan(0)
        expect(own.dim).toBe(784)
        expect(own.numClasses).toBe(10)
        expect(Buffer.from(own.y.buffer).equals(Buffer.from(all.sites[i]!.y.buffer))).toBe(true)
        expect(Buffer.from(own.x.buffer).equals(Buffer.from(all.sites[i]!.x.buffer))).toBe(true)
      }
    })
  }

  it('names the site index it does not know', async () => {
    const topology = parseTopology({ name: 'share', data: { partition: { kind: 'labels' }, trainLimit: 100 }, sites })
    const err = await loadSiteShare(topology, 4).catch((e: Error) => e)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).name).toBe('TopologyError')
    expect((err as Error).message).toBe('no site at index 4')
  })
})
