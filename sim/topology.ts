/**
 * The simulator's topology file: the federation, its sites, the links between
 * them and a fault schedule, as one JSON document validated with zod.
 *
 * Strategy, compression and privacy settings are the coordinator's own
 * schemas, so a topology is checked exactly as the federation will be.
 *
 * The JSON Schema that editors use is generated from these schemas
 * (sim/topology-schema.ts) and committed as sim/topology.schema.json.
 */
import { readFile, stat } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { z } from 'zod'
import { CompressionConfigSchema } from '../coordinator/compression/combined.ts'
import { PrivacySettingsSchema, checkPrivacyComposition } from '../coordinator/dp/settings.ts'
import { StrategyConfigSchema } from '../coordinator/strategies/registry.ts'
import { describeIssues } from '../protocols/validation.ts'
import { TopologyError } from './errors.ts'

/** Topology files are hand-written config; anything this large is a mistake. */
export const MAX_TOPOLOGY_BYTES = 1 << 20

const Name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a lower-case name of letters, digits and dashes')

// ---- links --------------------------------------------------------------

/** All fields optional: an entry overrides only what it names, over `links.default`. */
export const LinkOverrides = z.strictObject({
  latencyMs: z.number().min(0).max(60_000).optional().describe('One-way delay in ms; a request/response costs 2 × latencyMs more than on a 0 ms link.'),
  jitterMs: z.number().min(0).max(60_000).optional().describe('Standard deviation of an extra per-chunk delay (normal, seeded, never reorders bytes).'),
  bandwidthMbps: z.number().positive().nullable().optional().describe('Token-bucket rate in Mbit/s (10^6 bit/s) per direction; null = unlimited.'),
  loss: z.number().min(0).max(1).optional().describe('Probability that a given MiB sent over the link is lost; a loss resets the connection.')
})

export const LinkSpec = z.strictObject({
  latencyMs: z.number().min(0).max(60_000).default(0),
  jitterMs: z.number().min(0).max(60_000).default(0),
  bandwidthMbps: z.number().positive().nullable().default(null),
  loss: z.number().min(0).max(1).default(0)
})
export type LinkSpec = z.infer<typeof LinkSpec>

const LinkRule = LinkOverrides.extend({
  between: z.tuple([Name, Name]).describe('Two site names (links.pairs) or two region names (links.regions); symmetric.')
})

export const Links = z.strictObject({
  default: LinkSpec.default(() => LinkSpec.parse({})),
  regions: z.array(LinkRule).default(() => []).describe('Rules between regions (a region with itself for links inside it).'),
  pairs: z.array(LinkRule).default(() => []).describe('Rules between two sites; they win over region rules.')
})

// ---- federation ---------------------------------------------------------

// A minimal model spec until node/model/spec.ts (MoeSpec) is committed; the
// runner maps it onto MoeSpec. Strategy, compression and privacy are the
// coordinator's own schemas.
export const ModelSpec = z.strictObject({
  kind: z.literal('moe').default('moe'),
  inputDim: z.number().int().positive().default(784),
  width: z.number().int().positive().default(64),
  expertHidden: z.number().int().positive().default(64),
  experts: z.number().int().positive().max(1024).optional().describe('Default: one per expert id owned by the sites.'),
  topK: z.union([z.literal(1), z.literal(2)]).default(1),
  classes: z.number().int().min(2).default(10),
  seed: z.number().int().min(0).default(0)
})

export const Optimizer = z.strictObject({
  kind: z.enum(['sgd', 'momentum', 'adam']).default('sgd'),
  lr: z.number().positive().default(0.1)
})

export const Federation = z.strictObject({
  model: ModelSpec.default(() => ModelSpec.parse({})),
  strategy: StrategyConfigSchema.default(() => StrategyConfigSchema.parse({ kind: 'fedavg' })),
  rounds: z.number().int().positive().max(100_000).default(20),
  localSteps: z.number().int().positive().default(10).describe('H: local steps per round.'),
  batchSize: z.number().int().positive().default(32),
  optimizer: Optimizer.default(() => Optimizer.parse({})),
  compression: CompressionConfigSchema.default(() => CompressionConfigSchema.parse({ kind: 'none' })),
  privacy: PrivacySettingsSchema.default(() => PrivacySettingsSchema.parse({})),
  quorum: z.number().gt(0).max(1).default(0.6).describe('Fraction of live members a round needs.'),
  roundTimeoutS: z.number().positive().default(120)
})

// ---- data ---------------------------------------------------------------

export const DataSource = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('mnist') }),
  z.strictObject({
    kind: z.literal('table'),
    file: z.string().min(1).describe('CSV or JSONL; relative to the topology file.'),
    schema: z.string().min(1).describe('Column schema JSON; relative to the topology file.')
  })
])

export const Partition = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('iid') }),
  z.strictObject({ kind: z.literal('dirichlet'), alpha: z.number().positive() }),
  z.strictObject({ kind: z.literal('shards'), shardsPerSite: z.number().int().positive().default(2) }),
  z.strictObject({ kind: z.literal('labels') }).describe('Each site takes the labels listed in sites[i].labels.'),
  z.strictObject({ kind: z.literal('attribute'), column: z.string().min(1) })
])

export const Data = z.strictObject({
  source: DataSource.default(() => ({ kind: 'mnist' as const })),
  partition: Partition.default(() => ({ kind: 'iid' as const })),
  trainLimit: z.number().int().positive().optional().describe('Use only the first N training examples (speed).'),
  testLimit: z.number().int().positive().optional()
})

// ---- sites --------------------------------------------------------------

export const Site = z.strictObject({
  name: Name,
  region: Name.optional(),
  labels: z.array(z.number().int().min(0)).min(1).optional().describe('For data.partition kind "labels".'),
  dataFile: z.string().min(1).optional().describe('The site\'s own table instead of a share of data.source; relative to the topology file.'),
  backend: z.enum(['auto', 'gpu', 'node', 'wasm', 'cpu']).default('auto'),
  experts: z.array(z.number().int().min(0)).default(() => []).describe('Expert ids this site owns and trains.'),
  roles: z.array(z.enum(['trainer', 'coordinator', 'observer'])).min(1).default(() => ['trainer' as const, 'coordinator' as const]),
  priority: z.number().int().default(0).describe('Election priority; higher wins.')
})

// ---- faults -------------------------------------------------------------

export const Trigger = z.union([
  z.strictObject({ round: z.number().int().min(0) }),
  z.strictObject({ timeS: z.number().min(0) })
]).describe('When: at the start of a round, or seconds after the run starts.')

export const Fault = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('crash'),
    site: Name,
    at: Trigger,
    restartAfterS: z.number().min(0).nullable().default(null).describe('null = stays down.')
  }),
  z.strictObject({
    kind: z.literal('partition'),
    groups: z.array(z.array(Name).min(1)).min(2).describe('Sites in different groups cannot reach each other.'),
    at: Trigger,
    durationS: z.number().positive()
  }),
  z.strictObject({
    kind: z.literal('slow'),
    site: Name,
    factor: z.number().min(1).describe('Local training takes factor × as long.'),
    at: Trigger.default(() => ({ round: 0 })),
    durationS: z.number().positive().nullable().default(null)
  }),
  z.strictObject({ kind: z.literal('join'), site: Name, at: Trigger }).describe('The site is absent until then.'),
  z.strictObject({ kind: z.literal('leave'), site: Name, at: Trigger }).describe('The site leaves for good.')
])
export type Fault = z.infer<typeof Fault>

// ---- the document -------------------------------------------------------

const TopologyShape = z.strictObject({
  $schema: z.string().optional(),
  name: Name,
  description: z.string().max(2000).default(''),
  seed: z.number().int().min(0).max(2 ** 32 - 1).default(1),
  transport: z.enum(['tcp', 'memory']).default('tcp').describe('memory: in-process libp2p memory transport, for very many sites.'),
  execution: z.enum(['process', 'inline']).optional().describe('process: every site in a child process of its own (default for tcp); inline: every site in the simulator\'s process (required by the memory transport).'),
  federation: Federation.default(() => Federation.parse({})),
  data: Data.default(() => Data.parse({})),
  sites: z.array(Site).min(1).max(1024),
  links: Links.default(() => Links.parse({})),
  faults: z.array(Fault).default(() => [])
})

/** Cross-field rules, each reported at the path of the offending field. */
export const Topology = TopologyShape.superRefine((t, ctx) => {
  const names = new Set<string>()
  t.sites.forEach((s, i) => {
    if (names.has(s.name)) ctx.addIssue({ code: 'custom', path: ['sites', i, 'name'], message: `duplicate site name '${s.name}'`, input: s.name })
    names.add(s.name)
  })
  if (t.transport === 'memory' && t.execution === 'process') {
    ctx.addIssue({ code: 'custom', path: ['execution'], message: 'the memory transport connects nodes of one process only: use "execution": "inline" (or the tcp transport)', input: t.execution })
  }
  const regions = new Set(t.sites.flatMap(s => s.region === undefined ? [] : [s.region]))
  const owner = new Map<number, string>()
  t.sites.forEach((s, i) => {
    if (t.data.partition.kind === 'labels' && s.labels === undefined && s.dataFile === undefined) {
      ctx.addIssue({ code: 'custom', path: ['sites', i, 'labels'], message: 'data.partition kind "labels" needs the labels of every site', input: undefined })
    }
    s.labels?.forEach((l, j) => {
      if (l >= t.federation.model.classes) ctx.addIssue({ code: 'custom', path: ['sites', i, 'labels', j], message: `label ${l} is not below federation.model.classes (${t.federation.model.classes})`, input: l })
    })
    s.experts.forEach((e, j) => {
      const prev = owner.get(e)
      if (prev !== undefined) ctx.addIssue({ code: 'custom', path: ['sites', i, 'experts', j], message: `expert ${e} is already owned by site '${prev}'`, input: e })
      else owner.set(e, s.name)
      const max = t.federation.model.experts
      if (max !== undefined && e >= max) ctx.addIssue({ code: 'custom', path: ['sites', i, 'experts', j], message: `expert id ${e} is not below federation.model.experts (${max})`, input: e })
    })
  })
  const checkName = (known: Set<string>, what: string, name: string, path: Array<string | number>): void => {
    if (!known.has(name)) ctx.addIssue({ code: 'custom', path, message: `unknown ${what} '${name}'`, input: name })
  }
  t.links.pairs.forEach((r, i) => { r.between.forEach((n, j) => { checkName(names, 'site', n, ['links', 'pairs', i, 'between', j]) }) })
  t.links.regions.forEach((r, i) => { r.between.forEach((n, j) => { checkName(regions, 'region', n, ['links', 'regions', i, 'between', j]) }) })
  try {
    const f = t.federation
    checkPrivacyComposition({ privacy: f.privacy, sites: t.sites.length, vectorLength: sharedParameterCount(t), strategy: f.strategy, compression: f.compression })
  } catch (err) {
    ctx.addIssue({ code: 'custom', path: ['federation', 'privacy'], message: (err as Error).message, input: t.federation.privacy })
  }
  t.faults.forEach((f, i) => {
    if (f.kind === 'partition') f.groups.forEach((g, j) => { g.forEach((n, k) => { checkName(names, 'site', n, ['faults', i, 'groups', j, k]) }) })
    else checkName(names, 'site', f.site, ['faults', i, 'site'])
  })
})
export type Topology = z.infer<typeof Topology>

/** Where the sites run: as declared, else in child processes over tcp and in this process over the memory transport. */
export function executionOf (t: Pick<Topology, 'transport' | 'execution'>): 'process' | 'inline' {
  return t.execution ?? (t.transport === 'memory' ? 'inline' : 'process')
}

/** Experts in the model: as declared, else one per expert id the sites own. */
export function expertCount (t: Pick<Topology, 'federation' | 'sites'>): number {
  return t.federation.model.experts ?? Math.max(1, ...t.sites.flatMap(s => s.experts.map(e => e + 1)))
}

/** Length of the shared-parameter vector (trunk, router, head) that rounds exchange. */
export function sharedParameterCount (t: Pick<Topology, 'federation' | 'sites'>): number {
  const m = t.federation.model
  const e = expertCount(t)
  return m.inputDim * m.width + m.width + m.width * e + e + m.width * m.classes + m.classes
}
export type TopologyInput = z.input<typeof Topology>

/** Validates a parsed document; `source` names it in messages (a file path). */
export function parseTopology (input: unknown, source = 'topology'): Topology {
  const r = Topology.safeParse(input)
  if (r.success) return r.data
  const lines = describeIssues(r.error.issues, input)
  throw new TopologyError(`${source}: invalid topology:\n  ${lines.join('\n  ')}`)
}

/**
 * Reads, size-checks, parses and validates a topology file. Relative paths in
 * it (data.source file and schema, sites[].dataFile) are resolved against the
 * file's folder, so a topology can travel with its data.
 */
export async function loadTopology (path: string, options: { signal?: AbortSignal } = {}): Promise<Topology> {
  let size: number
  try {
    size = (await stat(path)).size
  } catch (err) {
    throw new TopologyError(`${path}: cannot read topology file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err })
  }
  if (size > MAX_TOPOLOGY_BYTES) throw new TopologyError(`${path}: topology file is ${size} bytes, more than the ${MAX_TOPOLOGY_BYTES} allowed`)
  const text = await readFile(path, { encoding: 'utf8', signal: options.signal })
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new TopologyError(`${path}: not valid JSON (${(err as Error).message})`, { cause: err })
  }
  const topology = parseTopology(json, path)
  const base = dirname(resolve(path))
  const abs = (p: string): string => isAbsolute(p) ? p : resolve(base, p)
  if (topology.data.source.kind === 'table') {
    topology.data.source.file = abs(topology.data.source.file)
    topology.data.source.schema = abs(topology.data.source.schema)
  }
  for (const s of topology.sites) if (s.dataFile !== undefined) s.dataFile = abs(s.dataFile)
  return topology
}

/** The link between two sites: pair rule, else region rule, else the default; symmetric. */
export function resolveLink (topology: Pick<Topology, 'links' | 'sites'>, a: string, b: string): LinkSpec {
  const regionOf = (n: string): string | undefined => topology.sites.find(s => s.name === n)?.region
  const matches = (between: readonly [string, string], x: string | undefined, y: string | undefined): boolean =>
    x !== undefined && y !== undefined && ((between[0] === x && between[1] === y) || (between[0] === y && between[1] === x))
  const rule = topology.links.pairs.findLast(r => matches(r.between, a, b)) ??
    topology.links.regions.findLast(r => matches(r.between, regionOf(a), regionOf(b)))
  const out: LinkSpec = { ...topology.links.default }
  if (rule !== undefined) {
    if (rule.latencyMs !== undefined) out.latencyMs = rule.latencyMs
    if (rule.jitterMs !== undefined) out.jitterMs = rule.jitterMs
    if (rule.bandwidthMbps !== undefined) out.bandwidthMbps = rule.bandwidthMbps
    if (rule.loss !== undefined) out.loss = rule.loss
  }
  return out
}
