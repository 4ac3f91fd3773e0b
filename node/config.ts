/**
 * A site's config file: one JSON document, validated with zod, with defaults
 * for everything an operator need not decide on day one. Errors name the
 * field path and what is wrong (protocols/validation.ts), e.g.
 *   mesh.members[1].peerId: expected a libp2p peer id (12D3KooW…), got "bob"
 * Relative paths in the file are resolved against the file's folder, so a
 * site folder can be moved or mounted anywhere.
 *
 * The JSON Schema editors use is generated from this schema
 * (node/site-config-schema.ts) and committed as node/site-config.schema.json.
 */
import { readFile, stat } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { CompressionConfigSchema } from '../coordinator/compression/combined.ts'
import { PrivacySettingsSchema } from '../coordinator/dp/settings.ts'
import { StrategyConfigSchema } from '../coordinator/strategies/registry.ts'
import { describeIssues } from '../protocols/validation.ts'
import { ConfigError } from './errors.ts'

/** Config files are hand-written; anything this large is a mistake. */
export const MAX_CONFIG_BYTES = 1 << 20

export const CONFIG_FILE_NAME = 'forgemesh.json'

const Name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a lower-case name of letters, digits and dashes')
const FilePath = z.string().min(1).max(4096)
// Base58btc Ed25519 peer ids (12D3KooW…) are 52 characters; older RSA ones 46.
const PeerId = z.string().regex(/^[1-9A-HJ-NP-Za-km-z]{46,60}$/, 'expected a libp2p peer id (12D3KooW…)')

function isMultiaddr (s: string): boolean {
  try {
    multiaddr(s)
    return s.startsWith('/')
  } catch {
    return false
  }
}
const Multiaddr = z.string().max(1024).refine(isMultiaddr, 'expected a multiaddr such as /ip4/10.0.0.2/tcp/4100')

// ---- mesh ---------------------------------------------------------------

export const Member = z.strictObject({
  name: Name.optional().describe('A label for logs and status; the peer id is what the mesh checks.'),
  peerId: PeerId.describe('The member\'s peer id, as `forgemesh init` printed it at that site.'),
  addresses: z.array(Multiaddr).default(() => []).describe('Where to dial it; /p2p/<peerId> is appended when missing. Empty: it dials us.'),
  priority: z.number().default(0).describe('Its election priority (as that site sets mesh.priority).')
})

export const MeshConfig = z.strictObject({
  listen: z.array(Multiaddr).min(1).default(() => ['/ip4/0.0.0.0/tcp/4100']).describe('Addresses the libp2p host listens on.'),
  pskFile: FilePath.nullable().default('federation.psk').describe('The federation\'s private-network key (pnet swarm key v1). null only with insecureOpenMesh.'),
  insecureOpenMesh: z.boolean().default(false).describe('Run with no federation key: local experiments only, logged loudly.'),
  members: z.array(Member).default(() => []).describe('The other sites of the federation: the allowlist and the addresses to dial.'),
  priority: z.number().default(0).describe('This site\'s election priority for the round coordinator role; higher wins, then the smaller peer id. Every member must list the same priorities.')
})

// ---- federation -----------------------------------------------------------

// Every member must agree on these; a member whose model spec differs is
// refused. Names and defaults follow the site runtime's own settings
// (node/site/config.ts), which validates them again when the node starts.
export const FederationConfig = z.strictObject({
  rounds: z.number().int().positive().max(10_000_000).default(100).describe('Rounds the federation runs; the node keeps serving after the last one.'),
  localSteps: z.number().int().positive().default(10).describe('H: local training steps per round.'),
  strategy: StrategyConfigSchema.default(() => StrategyConfigSchema.parse({ kind: 'fedavg' })),
  compression: CompressionConfigSchema.default(() => CompressionConfigSchema.parse({ kind: 'none' })),
  privacy: PrivacySettingsSchema.default(() => PrivacySettingsSchema.parse({})),
  quorumFraction: z.number().gt(0).max(1).default(0.5).describe('Share of a round\'s invited members whose updates make a quorum.'),
  minUpdates: z.number().int().positive().default(1).describe('A round never commits with fewer updates than this.'),
  minParticipants: z.number().int().positive().default(1).describe('A coordinator opens a round only when this many members (itself included) are live.'),
  roundTimeoutMs: z.number().int().positive().default(60_000).describe('How long a coordinator collects updates before closing with what it has (or aborting without quorum).'),
  heartbeatIntervalMs: z.number().int().positive().default(1_000),
  // Several intervals, so one lost greeting does not cause an election.
  heartbeatTimeoutMs: z.number().int().positive().default(5_000).describe('A member not heard from this long is not live; a silent coordinator is replaced.'),
  retryMs: z.number().int().positive().default(250).describe('How soon an update the coordinator was not ready for is retried.'),
  seed: z.union([z.number().int(), z.string().min(1).max(256)]).default(0).describe('Round seeds derive from it: the same at every member.')
})

// ---- learner --------------------------------------------------------------

export const RegressionLearnerConfig = z.strictObject({
  kind: z.literal('regression'),
  dim: z.number().int().positive().max(1_000_000).default(8).describe('Features of the linear model.'),
  samples: z.number().int().positive().max(10_000_000).default(256).describe('Seeded synthetic examples held by this site.'),
  seed: z.number().int().min(0).default(1).describe('Seed of the federation\'s true weights; the same at every site.'),
  siteSeed: z.number().int().min(0).optional().describe('Seed of this site\'s examples; default: derived from the site name.'),
  lr: z.number().positive().default(0.1)
}).describe('A linear-regression federation on seeded synthetic data: the quickest way to check a deployment end to end.')

export const MoeRoutingConfig = z.strictObject({
  epsilon: z.number().positive().max(1000).nullable().default(8).describe('Epsilon of both routing releases together, charged to this site\'s privacy ledger; null: exact statistics, no DP guarantee (experiments only).'),
  delta: z.number().gt(0).lt(1).default(1e-5),
  minCount: z.number().int().min(1).default(80).describe('Density components with fewer (noisy) rows are dropped; lower it for small shares.')
})

export const MnistMoeLearnerConfig = z.strictObject({
  kind: z.literal('mnist-moe'),
  labels: z.array(z.number().int().min(0).max(9)).min(1).optional().describe('Digits this site holds; default: all.'),
  trainLimit: z.number().int().positive().max(60_000).optional().describe('Read only the first N MNIST training images, then keep this site\'s labels; default: all 60,000.'),
  expert: z.number().int().min(0).max(255).optional().describe('This site\'s expert slot; default: its rank among the members\' peer ids (sorted).'),
  experts: z.number().int().min(1).max(256).optional().describe('Expert slots of the federation\'s MoE; default: one per member. The same at every member.'),
  publishEvery: z.number().int().min(0).default(10).describe('Publish the trained expert every P committed rounds (0: only after the last round, which always publishes).'),
  routing: MoeRoutingConfig.default(() => MoeRoutingConfig.parse({})).describe('The density router\'s DP releases (docs/routing.md).'),
  batchSize: z.number().int().positive().default(32),
  lr: z.number().positive().default(0.1),
  backend: z.enum(['auto', 'gpu', 'node', 'wasm', 'cpu']).default('auto')
}).describe('The flagship density-routed MNIST Mixture-of-Experts (bundled MNIST; this site\'s expert trained here and published; the assembled model served on POST /v1/predict).')

export const LearnerConfig = z.discriminatedUnion('kind', [RegressionLearnerConfig, MnistMoeLearnerConfig])

// ---- API and logs -----------------------------------------------------------

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

export const ApiConfig = z.strictObject({
  host: z.string().min(1).default('127.0.0.1').describe('Loopback by default; any other address needs tokenFile.'),
  port: z.number().int().min(0).max(65535).default(7400).describe('0 picks a free port (written to runtimeFile).'),
  tokenFile: FilePath.optional().describe('File holding the bearer token (≥ 16 characters) every request must carry.')
})

export const LogConfig = z.strictObject({
  level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  format: z.enum(['auto', 'json', 'pretty']).default('auto').describe('auto: readable lines on a terminal, JSON lines elsewhere.')
})

// ---- the document -----------------------------------------------------------

const SiteConfigShape = z.strictObject({
  $schema: z.string().optional(),
  site: Name.describe('This site\'s name in logs, metrics and status.'),
  identityFile: FilePath.default('identity.json').describe('The site\'s Ed25519 key (0600), created by `forgemesh init`.'),
  storeDir: FilePath.default('store').describe('The site\'s LevelDB: round log, experts, privacy ledger, audit log.'),
  runtimeFile: FilePath.default('node.json').describe('Written while the node runs: pid, peer id, addresses, API URL (read by `forgemesh status`).'),
  mesh: MeshConfig.default(() => MeshConfig.parse({})),
  federation: FederationConfig.default(() => FederationConfig.parse({})),
  learner: LearnerConfig.default(() => RegressionLearnerConfig.parse({ kind: 'regression' })),
  api: ApiConfig.default(() => ApiConfig.parse({})),
  log: LogConfig.default(() => LogConfig.parse({}))
})

/** Cross-field rules, each reported at the path of the field to change. */
export const SiteConfig = SiteConfigShape.superRefine((c, ctx) => {
  if (c.mesh.pskFile === null && !c.mesh.insecureOpenMesh) {
    ctx.addIssue({ code: 'custom', path: ['mesh', 'pskFile'], message: 'a federation key file is required unless mesh.insecureOpenMesh is true', input: null })
  }
  const seen = new Set<string>()
  c.mesh.members.forEach((m, i) => {
    if (seen.has(m.peerId)) ctx.addIssue({ code: 'custom', path: ['mesh', 'members', i, 'peerId'], message: 'duplicate member', input: m.peerId })
    seen.add(m.peerId)
    m.addresses.forEach((a, j) => {
      const p2p = a.match(/\/p2p\/([^/]+)$/)?.[1]
      if (p2p !== undefined && p2p !== m.peerId) {
        ctx.addIssue({ code: 'custom', path: ['mesh', 'members', i, 'addresses', j], message: `address ends in /p2p/${p2p}, not the member's peer id ${m.peerId}`, input: a })
      }
    })
  })
  const f = c.federation
  if (f.heartbeatTimeoutMs <= f.heartbeatIntervalMs) {
    ctx.addIssue({ code: 'custom', path: ['federation', 'heartbeatTimeoutMs'], message: `must be longer than heartbeatIntervalMs (${f.heartbeatIntervalMs}), or every member looks dead between two greetings`, input: f.heartbeatTimeoutMs })
  }
  if (c.learner.kind === 'mnist-moe') {
    const l = c.learner
    const experts = l.experts ?? c.mesh.members.length + 1
    if (l.experts !== undefined && l.experts < c.mesh.members.length + 1) ctx.addIssue({ code: 'custom', path: ['learner', 'experts'], message: `${l.experts} slots for ${c.mesh.members.length + 1} members: every member needs its own expert`, input: l.experts })
    if (l.expert !== undefined && l.expert >= experts) ctx.addIssue({ code: 'custom', path: ['learner', 'expert'], message: `slot ${l.expert} is not one of the ${experts} slots (0..${experts - 1})`, input: l.expert })
  }
  if (!LOOPBACK.has(c.api.host) && c.api.tokenFile === undefined) {
    ctx.addIssue({ code: 'custom', path: ['api', 'tokenFile'], message: `api.host ${c.api.host} is not loopback: a bearer token file is required`, input: undefined })
  }
})
export type SiteConfig = z.infer<typeof SiteConfig>
export type SiteConfigInput = z.input<typeof SiteConfig>

/** A loaded config: paths absolute, and where it came from. */
export interface LoadedSiteConfig extends SiteConfig {
  /** The config file's absolute path ('' when parsed from memory). */
  readonly source: string
}

/** Validates a parsed document; `source` names it in messages. */
export function parseSiteConfig (input: unknown, source = 'config'): SiteConfig {
  const r = SiteConfig.safeParse(input)
  if (r.success) return r.data
  const lines = describeIssues(r.error.issues, input)
  throw new ConfigError(`${source}: invalid site config:\n  ${lines.join('\n  ')}`)
}

/** Makes every path in a config absolute against `base` (the config's folder). */
export function resolveConfigPaths (config: SiteConfig, base: string): SiteConfig {
  const abs = (p: string): string => isAbsolute(p) ? p : resolve(base, p)
  return {
    ...config,
    identityFile: abs(config.identityFile),
    storeDir: abs(config.storeDir),
    runtimeFile: abs(config.runtimeFile),
    mesh: { ...config.mesh, pskFile: config.mesh.pskFile === null ? null : abs(config.mesh.pskFile) },
    api: { ...config.api, ...(config.api.tokenFile === undefined ? {} : { tokenFile: abs(config.api.tokenFile) }) }
  }
}

/** Reads, size-checks, parses and validates a config file, resolving its paths. */
export async function loadSiteConfig (path: string, options: { signal?: AbortSignal } = {}): Promise<LoadedSiteConfig> {
  const file = resolve(path)
  let size: number
  try {
    const info = await stat(file)
    if (!info.isFile()) throw new ConfigError(`${path}: not a file`)
    size = info.size
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError(`${path}: cannot read the config file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err })
  }
  if (size > MAX_CONFIG_BYTES) throw new ConfigError(`${path}: config file is ${size} bytes, more than the ${MAX_CONFIG_BYTES} allowed`)
  const text = await readFile(file, { encoding: 'utf8', signal: options.signal })
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`${path}: not valid JSON (${(err as Error).message})`, { cause: err })
  }
  return { ...resolveConfigPaths(parseSiteConfig(json, path), dirname(file)), source: file }
}

/** A member's dialable addresses, each ending in /p2p/<peer id>. */
export function memberAddresses (member: z.infer<typeof Member>): string[] {
  return member.addresses.map(a => /\/p2p\/[^/]+$/.test(a) ? a : `${a}/p2p/${member.peerId}`)
}
