/**
 * The simulator's data: the topology's dataset, split into the sites' shares
 * by the topology's partitioner, plus the held-out test set every method is
 * scored on. In a real federation each site loads only its own file. Inline,
 * one process plays every site, so it loads once and hands each simulated
 * site only its own rows; a site in a child process of its own reads only
 * its own rows (loadSiteShare): the labels fix the partition, then the
 * images of its share are read row by row, so its memory holds no one
 * else's data.
 */
import { createSeededRandom } from '../coordinator/components.ts'
import { partitionByAttribute, partitionByLabelGroups, partitionDirichlet, partitionIid, partitionShards, type Partition } from '../coordinator/partition.ts'
import { subset } from '../node/data/batches.ts'
import { loadMnist } from '../node/data/mnist.ts'
import type { LabeledData } from '../node/data/types.ts'
import { TopologyError } from './errors.ts'
import type { Topology } from './topology.ts'

export interface SimData {
  train: LabeledData
  /** Each site's own rows, in topology order. */
  sites: LabeledData[]
  test: LabeledData
  partition: Partition
}

export async function loadSimData (topology: Topology, options: { signal?: AbortSignal } = {}): Promise<SimData> {
  const { data } = topology
  if (data.source.kind !== 'mnist') throw new TopologyError(`data.source kind '${data.source.kind}' is not supported by the simulator yet: use 'mnist'`)
  const signal = options.signal !== undefined ? { signal: options.signal } : {}
  const train = await loadMnist({ split: 'train', ...(data.trainLimit !== undefined ? { limit: data.trainLimit } : {}), ...signal })
  const test = await loadMnist({ split: 'test', ...(data.testLimit !== undefined ? { limit: data.testLimit } : {}), ...signal })
  const partition = partitionFor(topology, train)
  return { train, sites: partition.indices.map(ix => subset(train, ix)), test, partition }
}

export function partitionFor (topology: Topology, train: LabeledData): Partition {
  const n = topology.sites.length
  const rng = createSeededRandom(topology.seed).fork('partition')
  const p = topology.data.partition
  switch (p.kind) {
    case 'iid': return partitionIid(train.n, n, rng, train.y)
    case 'dirichlet': return partitionDirichlet(train.y, n, p.alpha, rng)
    case 'shards': return partitionShards(train.y, n, p.shardsPerSite, rng)
    case 'labels': return partitionByLabelGroups(train.y, topology.sites.map(s => s.labels ?? []))
    case 'attribute': return partitionByAttribute(Array.from(train.y, String), train.y)
    default: {
      const never: never = p
      throw new TopologyError(`unknown partition ${JSON.stringify(never)}`)
    }
  }
}

/**
 * One site's share of the training data, exactly the rows loadSimData gives
 * it (same partition, same order, same float32 values), without holding the
 * other sites' rows or the test set: what a site's child process loads.
 */
export async function loadSiteShare (topology: Topology, index: number): Promise<LabeledData> {
  if (topology.data.source.kind !== 'mnist') throw new TopologyError(`data.source kind '${topology.data.source.kind}' is not supported by the simulator yet: use 'mnist'`)
  return await loadMnist({
    split: 'train',
    ...(topology.data.trainLimit !== undefined ? { limit: topology.data.trainLimit } : {}),
    // The partition needs the labels only.
    select: (y) => {
      const own = partitionFor(topology, { x: new Float32Array(0), y, n: y.length, dim: 28 * 28, numClasses: 10 }).indices[index]
      if (own === undefined) throw new TopologyError(`no site at index ${index}`)
      return own
    }
  })
}
