/**
 * Sites of the linear-regression federation for the site-runtime suites:
 * real hosts on loopback, real LevelDB stores in a temp folder, the seeded
 * regression data of test/support/rounds-federation.ts. Every site gets the
 * same settings; only its rows differ.
 */
import { createHash } from 'node:crypto'
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { createSeededRandom, createSilentLogger, type Logger } from '../../coordinator/components.ts'
import { createLogger, systemClock } from '../../node/components.ts'
import { loadOrCreateIdentity, type SiteIdentity } from '../../node/identity.ts'
import type { WireTap } from '../../node/mesh/host.ts'
import type { CommittedRound } from '../../node/round-log.ts'
import type { FederationSettingsInput } from '../../node/site/config.ts'
import type { Learner } from '../../node/site/learner.ts'
import { createRegressionLearner } from '../../node/site/regression-learner.ts'
import { createSite, type CommitEvent, type Site } from '../../node/site/site.ts'
import { makeRegressionData } from './rounds-federation.ts'

/** Three sites, six weights (five features and a bias); lr 0.3 reaches the optimum within 1e-5 in 17 rounds. */
export const DATA = { seed: 7, sites: 3, dim: 6, lr: 0.3 }
export const SPEC_HASH = createHash('sha256').update('forgemesh test: linear regression, 6 weights').digest('hex')
export const LOOPBACK = '/ip4/127.0.0.1/tcp/0'

export function siteName (i: number): string {
  return `site-${i + 1}`
}

/** Short timeouts: a dead member is noticed within 1.5 s; a round waits 20 s for a slow one. */
export function settings (over: Partial<FederationSettingsInput> = {}): FederationSettingsInput {
  return {
    strategy: { kind: 'fedavg' },
    localSteps: 1,
    minParticipants: DATA.sites,
    roundTimeoutMs: 20_000,
    heartbeatIntervalMs: 200,
    heartbeatTimeoutMs: 1_500,
    retryMs: 50,
    seed: DATA.seed,
    ...over
  }
}

export function regressionLearner (index: number): Learner {
  const site = makeRegressionData(DATA.seed, DATA.sites, DATA.dim).data[index]!
  return createRegressionLearner({ x: site.x, y: site.y, dim: DATA.dim, lr: DATA.lr })
}

export async function siteIdentities (dir: string, n: number): Promise<SiteIdentity[]> {
  const out: SiteIdentity[] = []
  for (let i = 0; i < n; i++) out.push(await loadOrCreateIdentity(join(dir, `${siteName(i)}.key`)))
  return out
}

export interface FederationOptions {
  dir: string
  psk: Uint8Array
  identities: SiteIdentity[]
  /** Members beyond the sites started here (e.g. peers a test drives by hand). */
  extraMembers?: string[]
  settings?: FederationSettingsInput
  learners?: (i: number) => Learner
  logger?: (i: number) => Logger
  wireTap?: (i: number) => WireTap | undefined
}

export interface TestFederation {
  sites: Site[]
  /** Every commit event, per site, in order. */
  commits: CommitEvent[][]
  stop: () => Promise<void>
}

/** Starts one site per identity; each dials those started before it, so they form a full mesh. */
export async function startFederation (opts: FederationOptions): Promise<TestFederation> {
  const allowlist = [...opts.identities.map(i => i.peerId), ...(opts.extraMembers ?? [])]
  const sites: Site[] = []
  const commits: CommitEvent[][] = []
  for (const [i, identity] of opts.identities.entries()) {
    const site = createSite({
      site: siteName(i),
      identity,
      store: join(opts.dir, siteName(i)),
      host: { listen: [LOOPBACK], bootstrap: sites.map(s => s.multiaddrs()[0]!), psk: opts.psk, allowlist, reconnect: { initialMs: 50, maxMs: 500 } },
      federation: opts.settings ?? settings(),
      specHash: SPEC_HASH
    }, {
      clock: systemClock,
      random: createSeededRandom(`site/${i}`),
      logger: opts.logger?.(i) ?? debugLogger(siteName(i)),
      learner: (opts.learners ?? regressionLearner)(i),
      ...(opts.wireTap?.(i) !== undefined ? { wireTap: opts.wireTap(i)! } : {})
    })
    const seen: CommitEvent[] = []
    site.on('commit', (e) => { seen.push(e) })
    commits.push(seen)
    await site.start()
    sites.push(site)
  }
  return {
    sites,
    commits,
    stop: async () => { for (const s of sites) await s.stop() }
  }
}

/** Silent, unless FM_SITE_DEBUG_DIR names a folder: then JSON lines per site, for reading a failed run. */
function debugLogger (name: string): Logger {
  const to = process.env['FM_SITE_DEBUG_DIR']
  if (to === undefined) return createSilentLogger(`forgemesh:${name}`)
  return createLogger(`forgemesh:${name}`, { level: 'debug', format: 'json', sink: (line) => { appendFileSync(join(to, `inproc-${name}.log`), line + '\n') } })
}

export async function records (site: Site): Promise<CommittedRound[]> {
  return await site.roundLog().records()
}

export async function finalWeights (site: Site): Promise<Float32Array> {
  const last = (await site.roundLog().last())!
  return (await site.roundLog().aggregate(last.round))!
}

export const hex = (v: Float32Array): string => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')
