/**
 * One site of the regression federation as a real child process, for the
 * SIGKILL tests: its own identity file, LevelDB store and TCP port. It
 * reports to the parent over Node's IPC channel (ready, commits, the
 * coordinator it sees, hold, done) and keeps serving after its last round
 * until the parent says stop. Everything it knows after a restart comes from
 * its store or from its peers.
 *
 *   node --import tsx test/support/site-runner.ts '<RunnerConfig as JSON>'
 *
 * `holdAtRound` makes its learner block in that round's training (after the
 * round opened, before its update is sent), so the parent can kill it there.
 */
import '../../node/runtime.ts'
import { createSeededRandom, createSilentLogger } from '../../coordinator/components.ts'
import { createLogger, systemClock } from '../../node/components.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import type { FederationSettingsInput } from '../../node/site/config.ts'
import type { Learner } from '../../node/site/learner.ts'
import { createSite, type Site } from '../../node/site/site.ts'
import { regressionLearner, siteName, SPEC_HASH } from './site-federation.ts'

export interface RunnerConfig {
  index: number
  dir: string
  keyFile: string
  port: number
  /** The other members' addresses, ending in /p2p/<peer id>. */
  bootstrap: string[]
  allowlist: string[]
  psk: string
  settings: FederationSettingsInput
  untilRound: number
  holdAtRound?: number
  /** Before running rounds, wait until this many other members are live (first start only). */
  waitForPeers?: number
}

export type RunnerMessage =
  | { type: 'ready', peerId: string, round: number }
  | { type: 'commit', round: number, participants: string[], via: string }
  | { type: 'coordinator', site: string | undefined }
  | { type: 'hold', round: number }
  | { type: 'done', round: number }
  | { type: 'error', message: string }

const config = JSON.parse(process.argv[2]!) as RunnerConfig
const tell = (m: RunnerMessage): void => { process.send?.(m) }
const logger = process.env['FM_SITE_DEBUG'] === '1' ? createLogger(`forgemesh:${siteName(config.index)}`, { level: 'debug', format: 'json' }) : createSilentLogger()

let site: Site | undefined
const inner = regressionLearner(config.index)
const learner: Learner = {
  sampleCount: inner.sampleCount,
  getShared: () => inner.getShared(),
  setShared: (p) => { inner.setShared(p) },
  trainLocal: async (steps, options) => {
    const round = (site?.status().round ?? 0) + 1
    if (round === config.holdAtRound) {
      tell({ type: 'hold', round })
      await new Promise(() => {}) // until the parent kills this process
    }
    return await inner.trainLocal(steps, options)
  }
}

async function main (): Promise<void> {
  const identity = await loadOrCreateIdentity(config.keyFile)
  site = createSite({
    site: siteName(config.index),
    identity,
    store: config.dir,
    host: { listen: [`/ip4/127.0.0.1/tcp/${config.port}`], bootstrap: config.bootstrap, psk: new Uint8Array(Buffer.from(config.psk, 'base64')), allowlist: config.allowlist, reconnect: { initialMs: 50, maxMs: 300 } },
    federation: config.settings,
    specHash: SPEC_HASH
  }, { clock: systemClock, random: createSeededRandom(`site/${config.index}`), logger, learner })
  site.on('commit', (e) => { tell({ type: 'commit', round: e.round, participants: e.participants, via: e.via }) })
  site.on('coordinator', (e) => { tell({ type: 'coordinator', site: e.site }) })
  await site.start()
  tell({ type: 'ready', peerId: identity.peerId, round: site.status().round })
  const s = site
  if (config.waitForPeers !== undefined) {
    while (s.status().peers.filter(p => p.live).length < config.waitForPeers) await new Promise(resolve => setTimeout(resolve, 20))
  }
  tell({ type: 'done', round: await s.run({ untilRound: config.untilRound }) })
}

const stop = async (code: number): Promise<never> => {
  await site?.stop().catch(() => {})
  process.exit(code)
}

process.on('message', (m: { type?: string }) => { if (m.type === 'stop') void stop(0) })
process.on('disconnect', () => { void stop(0) })
main().catch((err: unknown) => {
  tell({ type: 'error', message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) })
  void stop(1)
})
