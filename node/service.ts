/**
 * The long-lived site service behind `forgemesh node start`: config ->
 * identity, federation key, store, audit log, metrics, the site runtime
 * (mesh + rounds + learner) and the local HTTP API. It runs the federation's
 * rounds, then keeps serving (status, metrics, predictions, catch-up for
 * members that were away) until stop().
 *
 * stop() is the one way down, from a signal or a fatal error: the current
 * round is finished or aborted through the runtime's AbortSignal, then the
 * mesh, the API and the store are closed in that order, so nothing is written
 * after the store is flushed.
 */
import { stat } from 'node:fs/promises'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import type { Clock, Logger, LogLevel } from '../coordinator/components.ts'
import { createSiteApi, type SiteApi } from './api.ts'
import { createAuditLog, type AuditLog } from './audit.ts'
import { createLogger } from './components.ts'
import type { LoadedSiteConfig } from './config.ts'
import { ConfigError, StoreInUseError } from './errors.ts'
import { createExpertRegistry } from './experts/registry.ts'
import { loadOrCreateIdentity, type SiteIdentity } from './identity.ts'
import { loadPsk } from './mesh/psk.ts'
import { createSiteMetrics, type SiteMetrics } from './metrics.ts'
import { createRoundLog } from './round-log.ts'
import { readTokenFile, removeRuntimeFile, writeRuntimeFile, type NodeStatus } from './service-files.ts'
import { createSiteRuntime, type RuntimeCommit, type SiteRuntime } from './service-runtime.ts'
import { openSiteStore, type SiteStore } from './store.ts'

export interface SiteServiceComponents {
  clock: Clock
  logger: Logger
}

export interface SiteService {
  readonly peerId: string
  apiUrl: () => string
  status: () => Promise<NodeStatus>
  /** Finishes or aborts the current round, closes everything; idempotent. */
  stop: (reason: string) => Promise<void>
  /** Resolves once stopped: code 0 after a clean stop, 1 after a fatal error. */
  stopped: Promise<{ code: number }>
}

/** The node's logger: JSON lines on stdout, readable lines when stdout is a terminal. */
export function createServiceLogger (config: LoadedSiteConfig, options: { level?: string | undefined, json?: boolean, sink?: (line: string) => void } = {}): Logger {
  const format = options.json === true || config.log.format === 'json'
    ? 'json'
    : config.log.format === 'pretty' || process.stdout.isTTY ? 'pretty' : 'json'
  return createLogger('forgemesh:node', {
    level: (options.level ?? config.log.level) as LogLevel,
    format,
    sink: options.sink ?? ((line) => { process.stdout.write(line + '\n') })
  })
}

async function requireFile (path: string, field: string, hint: string): Promise<void> {
  try {
    await stat(path)
  } catch {
    throw new ConfigError(`${field}: ${path} does not exist; ${hint}`)
  }
}

async function openStoreExclusive (path: string): Promise<SiteStore> {
  try {
    return await openSiteStore(path)
  } catch (err) {
    if ((err as { cause?: { code?: string } }).cause?.code === 'LEVEL_LOCKED') {
      throw new StoreInUseError(`storeDir ${path} is in use by another process: is this site's node already running?`, { cause: err })
    }
    throw err
  }
}

export interface SiteServiceOptions {
  signal?: AbortSignal
  /** Called after every committed round (the CLI draws its progress bar from it). */
  onCommit?: (c: RuntimeCommit) => void
}

export async function startSiteService (config: LoadedSiteConfig, components: SiteServiceComponents, options: SiteServiceOptions = {}): Promise<SiteService> {
  const { clock } = components
  const log = components.logger
  const startedAt = clock.now()

  // Everything a bad config can break is checked before anything is opened.
  await requireFile(config.identityFile, 'identityFile', 'run \'forgemesh init\' to create the site (a new key would be a new member)')
  if (config.mesh.pskFile !== null) await requireFile(config.mesh.pskFile, 'mesh.pskFile', 'copy the federation key from the member who created it, or run \'forgemesh init\'')
  const token = config.api.tokenFile === undefined ? undefined : await readTokenFile(config.api.tokenFile)
  const identity: SiteIdentity = await loadOrCreateIdentity(config.identityFile)
  const psk = config.mesh.pskFile === null ? undefined : await loadPsk(config.mesh.pskFile)

  const store = await openStoreExclusive(config.storeDir)
  const audit: AuditLog = createAuditLog(store, { clock })
  const metrics: SiteMetrics = createSiteMetrics(config.site)
  const resumedFrom = (await createRoundLog(store).last())?.round ?? 0
  let state: NodeStatus['state'] = 'starting'
  let runtime: SiteRuntime | undefined
  let api: SiteApi | undefined
  let stopping: Promise<void> | undefined
  let resolveStopped!: (r: { code: number }) => void
  const stopped = new Promise<{ code: number }>(resolve => { resolveStopped = resolve })
  const rounds = new AbortController()

  const registry = createExpertRegistry({ store, clock })
  const names = new Map<string, string>([[identity.peerId, config.site], ...config.mesh.members.flatMap(m => m.name === undefined ? [] : [[m.peerId, m.name] as [string, string]])])
  /** Experts this site holds and may use (latest version, not withdrawn): `<expert>@v<version> (<site>)`. */
  const experts = async (): Promise<string[]> => {
    if (state === 'stopped') return []
    try {
      return (await registry.usable()).map(r => `${r.manifest.expertId}@v${r.manifest.version} (${names.get(r.manifest.siteId) ?? r.manifest.siteId})`)
    } catch (err) {
      log.warn('status.experts.failed', { error: err })
      return []
    }
  }

  const status = async (): Promise<NodeStatus> => {
    const s = runtime?.status()
    const connected = new Set(s?.peers ?? [])
    return {
      site: config.site,
      peerId: identity.peerId,
      state,
      uptimeS: (clock.now() - startedAt) / 1000,
      round: { committed: s?.round ?? resumedFrom, target: config.federation.rounds, resumedFrom },
      coordinator: s?.coordinator ?? null,
      peers: config.mesh.members.map(m => ({ peerId: m.peerId, ...(m.name === undefined ? {} : { name: m.name }), connected: connected.has(m.peerId) })),
      experts: await experts(),
      backend: runtime?.backend ?? 'none',
      privacy: s?.privacy ?? null,
      eps: s?.privacy?.spent.epsilon ?? 0,
      addresses: runtime?.multiaddrs() ?? []
    }
  }

  // The runtime keeps the round, byte, latency and privacy series current
  // as rounds commit; connected peers change between commits, so refresh it here.
  const renderMetrics = async (): Promise<{ contentType: string, body: string }> => {
    if (runtime !== undefined) metrics.peersConnected.set(runtime.status().peers.length)
    return await metrics.render()
  }

  const stop = async (reason: string, code = 0): Promise<void> => {
    if (stopping !== undefined) return await stopping
    stopping = (async () => {
      state = 'stopping'
      log.info('node.stopping', { reason })
      rounds.abort(new Error(`node stopping: ${reason}`))
      let exitCode = code
      const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
        try {
          await fn()
        } catch (err) {
          exitCode = 1
          log.error('node.stop.failed', { step: what, error: err })
        }
      }
      await step('runtime', async () => { await runtime?.stop() })
      await step('api', async () => { await api?.stop() })
      const committed = runtime?.status().round ?? resumedFrom
      await step('audit', async () => { await audit.append('node:stop', { reason, committed }) })
      // Closing LevelDB flushes its write-ahead log: nothing committed is lost.
      await step('store', async () => { await store.close() })
      await step('runtime file', async () => { await removeRuntimeFile(config.runtimeFile) })
      state = 'stopped'
      log.info('node.stopped', { reason, committed, code: exitCode })
      resolveStopped({ code: exitCode })
    })()
    await stopping
  }

  let auditedStart = false
  try {
    runtime = await createSiteRuntime(config, {
      identity,
      psk,
      store,
      audit,
      libp2pMetrics: prometheusMetrics({ registry: metrics.registry }),
      metrics
    }, { clock, logger: log })
    if (options.onCommit !== undefined) runtime.onCommit(options.onCommit)
    // Recorded before the mesh starts, so joins and rounds follow it in the log.
    await audit.append('node:start', { peerId: identity.peerId, resumedFrom, listen: config.mesh.listen })
    auditedStart = true
    await runtime.start()
    // A predict body of MAX_PREDICT_ROWS MNIST rows as JSON is several MiB; the default 1 MiB bounds status-only sites.
    const maxBodyBytes = runtime.predict === undefined ? undefined : 32 * 1024 * 1024
    api = createSiteApi({ host: config.api.host, port: config.api.port, ...(token === undefined ? {} : { token }), ...(maxBodyBytes === undefined ? {} : { maxBodyBytes }) }, {
      status,
      metrics: renderMetrics,
      ...(runtime.predict === undefined ? {} : { predict: runtime.predict })
    }, { logger: log.child('api') })
    await api.start()
    await writeRuntimeFile(config.runtimeFile, {
      v: 1,
      pid: process.pid,
      site: config.site,
      peerId: identity.peerId,
      apiUrl: api.url(),
      addresses: runtime.multiaddrs(),
      startedAt: new Date(startedAt).toISOString()
    })
  } catch (err) {
    // A half-started node releases what it opened, so a retry finds the store free.
    await runtime?.stop().catch(() => {})
    await api?.stop().catch(() => {})
    if (auditedStart) await audit.append('node:stop', { reason: `start failed: ${(err as Error).message}`, committed: resumedFrom }).catch(() => {})
    await store.close().catch(() => {})
    await removeRuntimeFile(config.runtimeFile).catch(() => {})
    throw err
  }
  state = 'running'
  log.info('node.started', { site: config.site, peer: identity.peerId, api: api.url(), addresses: runtime.multiaddrs(), resumedFrom, target: config.federation.rounds })

  const rt = runtime
  void (async () => {
    try {
      await rt.run(config.federation.rounds, { signal: rounds.signal })
      if (!rounds.signal.aborted) log.info('federation.done', { committed: rt.status().round, target: config.federation.rounds, message: 'all rounds committed; still serving status, metrics and catch-up' })
    } catch (err) {
      if (rounds.signal.aborted) return
      log.error('node.failed', { error: err })
      await stop(`fatal: ${(err as Error).message}`, 1)
    }
  })()
  options.signal?.addEventListener('abort', () => { void stop('aborted') }, { once: true })

  return {
    peerId: identity.peerId,
    apiUrl: () => api!.url(),
    status,
    stop: async (reason) => { await stop(reason) },
    stopped
  }
}
