/**
 * Partitioners: how a dataset is split across sites in the simulator and the
 * tests. Pure and seeded: they take labels (or attribute values) and a Random,
 * and return the row indices of each site plus a summary (per-site counts and
 * label histogram). Each site's indices are in ascending order; the order
 * carries no information (batch sources shuffle with their own seed).
 */
import type { Random } from './components.ts'
import { InvalidArgumentError, PartitionInfeasibleError } from './errors.ts'

export interface PartitionSummary {
  /** Examples per site. */
  counts: number[]
  /** labelHistogram[site][label]; empty rows when no labels were given. */
  labelHistogram: number[][]
}

export interface Partition {
  indices: Int32Array[]
  summary: PartitionSummary
  /** For partitionByAttribute: the attribute value each site holds. */
  sites?: string[]
}

function checkSites (sites: number, n: number): void {
  if (!Number.isInteger(sites) || sites < 1) throw new InvalidArgumentError(`sites must be a positive integer, got ${sites}`)
  if (sites > n) throw new InvalidArgumentError(`cannot split ${n} examples across ${sites} sites`)
}

/** Checks labels are integers >= 0 and returns the number of classes (max + 1). */
function classCount (labels: ArrayLike<number>): number {
  let max = -1
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i]!
    if (!Number.isInteger(c) || c < 0) throw new InvalidArgumentError(`label at ${i} must be a non-negative integer, got ${c}`)
    if (c > max) max = c
  }
  return max + 1
}

function shuffle (a: Int32Array, rng: Random): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    const t = a[i]!
    a[i] = a[j]!
    a[j] = t
  }
}

function sortedArrays (lists: number[][]): Int32Array[] {
  return lists.map(l => Int32Array.from(l).sort())
}

/** Per-site counts and label histogram of a partition. */
export function summarizePartition (labels: ArrayLike<number> | undefined, indices: readonly Int32Array[], numClasses: number): PartitionSummary {
  const counts = indices.map(ix => ix.length)
  if (labels === undefined) return { counts, labelHistogram: indices.map(() => []) }
  const labelHistogram = indices.map(ix => {
    const h = new Array<number>(numClasses).fill(0)
    for (const i of ix) {
      const c = labels[i]
      if (c === undefined || c < 0 || c >= numClasses) throw new InvalidArgumentError(`index ${i} has label ${String(c)}, outside 0..${numClasses - 1}`)
      h[c]!++
    }
    return h
  })
  return { counts, labelHistogram }
}

/** IID: a uniform random permutation cut into `sites` parts whose sizes differ by at most one. */
export function partitionIid (n: number, sites: number, rng: Random, labels?: ArrayLike<number>): Partition {
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`n must be a non-negative integer, got ${n}`)
  if (labels !== undefined && labels.length !== n) throw new InvalidArgumentError(`${labels.length} labels for n = ${n}`)
  checkSites(sites, n)
  const perm = Int32Array.from({ length: n }, (_, i) => i)
  shuffle(perm, rng)
  const indices: Int32Array[] = []
  const base = Math.floor(n / sites)
  const extra = n % sites
  let off = 0
  for (let s = 0; s < sites; s++) {
    const len = base + (s < extra ? 1 : 0)
    indices.push(perm.slice(off, off + len).sort())
    off += len
  }
  const numClasses = labels === undefined ? 0 : classCount(labels)
  return { indices, summary: summarizePartition(labels, indices, numClasses) }
}

/** log of a Gamma(shape, 1) draw (Marsaglia-Tsang); logs keep tiny shapes from underflowing to 0. */
function logGamma (shape: number, rng: Random): number {
  if (shape < 1) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a).
    const u = 1 - rng.next()
    return logGamma(shape + 1, rng) + Math.log(u) / shape
  }
  const d = shape - 1 / 3
  const c = 1 / Math.sqrt(9 * d)
  for (;;) {
    const x = rng.normal()
    const v = (1 + c * x) ** 3
    if (v <= 0) continue
    const u = 1 - rng.next()
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return Math.log(d * v)
  }
}

/** One draw from a symmetric Dirichlet(alpha) over k outcomes. */
export function sampleDirichlet (k: number, alpha: number, rng: Random): number[] {
  const logs = Array.from({ length: k }, () => logGamma(alpha, rng))
  const max = Math.max(...logs)
  const w = logs.map(l => Math.exp(l - max))
  const sum = w.reduce((a, b) => a + b, 0)
  return w.map(x => x / sum)
}

export interface DirichletOptions {
  /** Redraw until every site holds at least this many examples. Default 1. */
  minSize?: number
  /** Give up (PartitionInfeasibleError) after this many draws. Default 100. */
  maxTries?: number
}

/**
 * Label skew: for each class, its examples are shuffled and split across sites
 * in proportions drawn from Dirichlet(alpha). Small alpha (0.1) gives each
 * site a few dominant classes; large alpha (100) approaches IID.
 */
export function partitionDirichlet (labels: ArrayLike<number>, sites: number, alpha: number, rng: Random, options: DirichletOptions = {}): Partition {
  const n = labels.length
  checkSites(sites, n)
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new InvalidArgumentError(`alpha must be a positive finite number, got ${alpha}`)
  const minSize = options.minSize ?? 1
  const maxTries = options.maxTries ?? 100
  const numClasses = classCount(labels)
  const byClass: number[][] = Array.from({ length: numClasses }, () => [])
  for (let i = 0; i < n; i++) byClass[labels[i]!]!.push(i)

  for (let attempt = 0; attempt < maxTries; attempt++) {
    const lists: number[][] = Array.from({ length: sites }, () => [])
    for (const members of byClass) {
      const ix = Int32Array.from(members)
      shuffle(ix, rng)
      const p = sampleDirichlet(sites, alpha, rng)
      let cum = 0
      let start = 0
      for (let s = 0; s < sites; s++) {
        cum += p[s]!
        const end = s === sites - 1 ? ix.length : Math.min(ix.length, Math.round(cum * ix.length))
        for (let j = start; j < end; j++) lists[s]!.push(ix[j]!)
        start = Math.max(start, end)
      }
    }
    if (lists.every(l => l.length >= minSize)) {
      const indices = sortedArrays(lists)
      return { indices, summary: summarizePartition(labels, indices, numClasses) }
    }
  }
  throw new PartitionInfeasibleError(`Dirichlet(${alpha}) over ${sites} sites left a site with fewer than ${minSize} examples in ${maxTries} draws; raise alpha or lower minSize`)
}

/**
 * The FedAvg paper's pathological split: sort by label, cut into
 * sites * shardsPerSite equal shards, give each site shardsPerSite shards at
 * random. With 2 shards per site most sites see only two labels.
 */
export function partitionShards (labels: ArrayLike<number>, sites: number, shardsPerSite: number | undefined = 2, rng: Random): Partition {
  const n = labels.length
  checkSites(sites, n)
  if (!Number.isInteger(shardsPerSite) || shardsPerSite < 1) throw new InvalidArgumentError(`shardsPerSite must be a positive integer, got ${shardsPerSite}`)
  const numShards = sites * shardsPerSite
  if (numShards > n) throw new InvalidArgumentError(`cannot cut ${n} examples into ${numShards} shards`)
  const numClasses = classCount(labels)
  // Stable: ties keep index order, so the split is a function of the seed alone.
  const sorted = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => (labels[a]! - labels[b]!) || (a - b))
  const shardIds = Int32Array.from({ length: numShards }, (_, i) => i)
  shuffle(shardIds, rng)
  const base = Math.floor(n / numShards)
  const extra = n % numShards
  const shardStart = (k: number): number => k * base + Math.min(k, extra)
  const lists: number[][] = Array.from({ length: sites }, () => [])
  for (let s = 0; s < sites; s++) {
    for (let j = 0; j < shardsPerSite; j++) {
      const k = shardIds[s * shardsPerSite + j]!
      for (let p = shardStart(k); p < shardStart(k + 1); p++) lists[s]!.push(sorted[p]!)
    }
  }
  const indices = sortedArrays(lists)
  return { indices, summary: summarizePartition(labels, indices, numClasses) }
}

/**
 * Site k holds every example whose label is in groups[k] (no randomness).
 * [[0,1],[2,3],[4,5],[6,7],[8,9]] is the flagship five-site split. A label
 * named by several groups is dealt round-robin among them in index order; a
 * label named by none is left out.
 */
export function partitionByLabelGroups (labels: ArrayLike<number>, groups: readonly (readonly number[])[]): Partition {
  if (groups.length < 1) throw new InvalidArgumentError('partitionByLabelGroups needs at least one group')
  let numClasses = classCount(labels)
  const owners = new Map<number, number[]>()
  groups.forEach((g, s) => {
    if (g.length === 0) throw new InvalidArgumentError(`group ${s} is empty`)
    for (const c of new Set(g)) {
      if (!Number.isInteger(c) || c < 0) throw new InvalidArgumentError(`group ${s} names label ${c}, not a non-negative integer`)
      numClasses = Math.max(numClasses, c + 1)
      owners.set(c, [...(owners.get(c) ?? []), s])
    }
  })
  const lists: number[][] = groups.map(() => [])
  const dealt = new Map<number, number>()
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i]!
    const o = owners.get(c)
    if (o === undefined) continue
    const k = dealt.get(c) ?? 0
    dealt.set(c, k + 1)
    lists[o[k % o.length]!]!.push(i)
  }
  const indices = sortedArrays(lists)
  return { indices, summary: summarizePartition(labels, indices, numClasses) }
}

/**
 * One site per distinct attribute value (e.g. a region column), sites in
 * ascending order of value; `sites` names the value of each.
 */
export function partitionByAttribute (values: readonly string[], labels?: ArrayLike<number>): Partition {
  if (labels !== undefined && labels.length !== values.length) throw new InvalidArgumentError(`${labels.length} labels for ${values.length} attribute values`)
  const byValue = new Map<string, number[]>()
  values.forEach((v, i) => {
    if (typeof v !== 'string') throw new InvalidArgumentError(`attribute value at ${i} is not a string`)
    const l = byValue.get(v)
    if (l === undefined) byValue.set(v, [i])
    else l.push(i)
  })
  const sites = [...byValue.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const indices = sites.map(v => Int32Array.from(byValue.get(v)!))
  const numClasses = labels === undefined ? 0 : classCount(labels)
  return { indices, summary: summarizePartition(labels, indices, numClasses), sites }
}

/** A short human table of a partition: one line per site. */
export function formatPartitionSummary (summary: PartitionSummary, names?: readonly string[]): string {
  return summary.counts.map((c, s) => {
    const hist = summary.labelHistogram[s] ?? []
    return `${names?.[s] ?? `site ${s}`}: ${c} examples${hist.length > 0 ? ` [${hist.join(' ')}]` : ''}`
  }).join('\n')
}
