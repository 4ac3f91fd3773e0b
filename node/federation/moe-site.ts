/**
 * The density-routed MoE (docs/routing.md) as one long-lived site runs it,
 * beside the rounds that createSite drives. sim/moe-method.ts runs the same
 * phases for many sites from one process; here every site acts on its own,
 * so each phase waits on what it can observe (its registry, its mesh):
 *
 *   1. Release 1: the site charges its noised global moments to its ledger,
 *      signs them as a contribution (global-release.ts) and announces that
 *      hash to ONE aggregator only, serving the bytes from memory. The
 *      aggregator (highest election priority, then the smallest peer id: a
 *      pure function of the configs) waits for every member's contribution,
 *      verifies and sums them and publishes the sum and the projection.
 *   2. Release 2: once the site holds that routing artifact, it releases its
 *      components in the projection, charged, and publishes them at once
 *      with its (untrained) expert: the release is made exactly once, and a
 *      restarted node reads it back from its own artifact.
 *   3. Rounds (the learner under createSite); every `publishEvery` rounds and
 *      after the last one the trained expert is published again, carrying
 *      the same release.
 *   4. Assembly from the verified artifacts in the registry with the density
 *      router; redone whenever another member's expert arrives.
 */
import type { Clock, Logger, Random } from '../../coordinator/components.ts'
import type { RoutingConfig } from '../../coordinator/routing/config.ts'
import type { Projection } from '../../coordinator/routing/projection.ts'
import type { SiteRelease } from '../../coordinator/routing/release.ts'
import { buildDensityRouter, scoreRows } from '../../coordinator/routing/router.ts'
import { EXPERTS_ANNOUNCE_PROTOCOL, EXPERTS_ANNOUNCE_TIMEOUT_MS } from '../../protocols/experts-announce/constants.ts'
import { Ack } from '../../protocols/experts-announce/experts-announce.ts'
import { unflattenTensors, type TensorMap } from '../../protocols/tensors.ts'
import type { LabeledData } from '../data/types.ts'
import { FederationError, HttpError } from '../errors.ts'
import type { AuditLog } from '../audit.ts'
import { memberKeys, type VerifiedArtifact } from '../experts/artifact.ts'
import { assembleMoe, type AssembledMoe } from '../experts/assemble.ts'
import { createExpertExchange, type ExpertExchange } from '../experts/exchange.ts'
import { softmaxRows, type RouterFactory } from '../experts/gates.ts'
import type { ExpertRegistry } from '../experts/registry.ts'
import { createPredictor } from '../experts/serve.ts'
import type { SiteIdentity } from '../identity.ts'
import { serveBlobs } from '../mesh/transfer.ts'
import type { MoeSpec } from '../model/spec.ts'
import type { PrivacyLedger } from '../privacy/ledger.ts'
import type { Site } from '../site/types.ts'
import { buildContribution, collectContributions, CONTRIBUTION_SUFFIX, isRoutingArtifact, readSummedRelease, sourcesToTensor, summedRelease, withHeldBlobs, ROUTING_SUFFIX, routingPublication } from './global-release.ts'
import type { MoeLearner } from './learner.ts'
import { componentsFromTensors, componentsToTensors, hasComponents } from './release-tensors.ts'
import { releaseSiteComponents, releaseSiteGlobal } from './routing-releases.ts'

/** In each expert artifact: the routing artifact whose projection its release 2 lives in (as sim/moe-method.ts). */
const PROJECTION_SOURCE = 'router.projection.source'
/** How often a member re-announces its contribution until the routing artifact arrives (the aggregator may not be up yet). */
const ANNOUNCE_EVERY_MS = 2_000

export interface MoeSiteInit {
  site: string
  spec: MoeSpec
  /** This site's expert slot. */
  slot: number
  /** The site's own rows (they never leave this process; only DP releases and weights do). */
  data: LabeledData
  /** Every member's peer id, this site's included. */
  members: readonly string[]
  /** The peer id that sums release 1. */
  aggregator: string
  /** Seeds the aggregator's PCA; any string every member agrees on. */
  federation: string
  routing: RoutingConfig
  /** Publish the trained expert every this many committed rounds (0: only at the end). */
  publishEvery: number
}

export interface MoeSiteComponents {
  site: Site
  learner: MoeLearner
  registry: ExpertRegistry
  identity: SiteIdentity
  /** null: exact routing statistics, nothing charged (no DP guarantee). */
  ledger: PrivacyLedger | null
  random: Random
  clock: Clock
  logger: Logger
  audit?: AuditLog
}

export interface MoeSite {
  /** Starts the expert exchange and the blob server on the site's host (after site.start()). */
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Phases 1 and 2; returns at once when this site's release 2 is already published. */
  setup: (options: { signal: AbortSignal }) => Promise<void>
  /** After the last round: the final publication, then assembly (and again whenever an expert arrives). */
  finish: (target: number, options: { signal: AbortSignal }) => Promise<void>
  /** POST /v1/predict: 503 until a model is assembled. */
  predict: (body: unknown) => Promise<unknown>
  /** Expert ids in the served model, by slot (empty before assembly). */
  assembled: () => string[]
}

const isExpertArtifact = (m: { expertId: string }): boolean => !m.expertId.endsWith(CONTRIBUTION_SUFFIX) && !m.expertId.endsWith(ROUTING_SUFFIX)

export function createMoeSite (init: MoeSiteInit, components: MoeSiteComponents): MoeSite {
  const { site, learner, registry, identity, clock, ledger } = components
  const log = components.logger
  const { spec, routing } = init
  const self = identity.peerId
  const members = memberKeys(new Set([...init.members, self]))
  const expertId = `${init.site}.expert-${init.slot}`
  const held = withHeldBlobs(registry.blobSource())
  const exchange: ExpertExchange = createExpertExchange({ spec, members, serveArtifacts: false }, {
    host: site.host, identity, registry, clock, logger: log.child('experts'), ...(components.audit !== undefined ? { audit: components.audit } : {})
  })
  let projection: Projection | undefined
  let routingHash: string | undefined
  let release: SiteRelease | undefined
  let model: AssembledMoe | undefined
  let predictor: ((body: unknown) => Promise<unknown>) | undefined
  let started = false
  let offStored: (() => void) | undefined
  let offCommit: (() => void) | undefined
  /** Publications and assemblies run one at a time, in order. */
  let chain: Promise<unknown> = Promise.resolve()
  const serial = async <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn)
    chain = next.catch(() => {})
    return await next
  }

  const own = async (): Promise<VerifiedArtifact | undefined> => {
    const history = await registry.history(self, expertId)
    const last = history.at(-1)
    return last === undefined ? undefined : await registry.load(last.hash, { spec })
  }

  const routingArtifact = async (): Promise<VerifiedArtifact | undefined> => {
    const rec = (await registry.usable()).find(r => isRoutingArtifact(r.manifest) && r.manifest.siteId === init.aggregator)
    return rec === undefined ? undefined : await registry.load(rec.hash, { spec })
  }

  const publish = async (round: number, final: boolean, signal?: AbortSignal): Promise<void> => {
    if (release === undefined || routingHash === undefined) throw new FederationError('an expert is published only after this site\'s routing release 2')
    const previous = (await registry.history(self, expertId)).map(r => r.manifest.version)
    const version = previous.length === 0 ? 1 : Math.max(...previous) + 1
    const a = await exchange.publish({
      expertId,
      slot: init.slot,
      version,
      parentVersion: previous.length === 0 ? null : version - 1,
      sampleCount: init.data.n,
      metrics: { trainedRounds: round, final: final ? 1 : 0 },
      params: learner.expertParams(),
      router: new Map([...componentsToTensors(release), [PROJECTION_SOURCE, sourcesToTensor([routingHash])] as const])
    }, signal !== undefined ? { signal } : {})
    log.info('moe.published', { expert: expertId, version, round, final, hash: a.hash })
  }

  // ---- phase 1 ----------------------------------------------------------------

  const waitFor = async <T>(check: () => Promise<T | undefined>, signal: AbortSignal, everyMs = 200): Promise<T> => {
    for (;;) {
      signal.throwIfAborted()
      const v = await check()
      if (v !== undefined) return v
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, everyMs)
        function done (): void { clearTimeout(t); signal.removeEventListener('abort', done); resolve() }
        signal.addEventListener('abort', done, { once: true })
      })
    }
  }

  /** The aggregator's side: every member's verified contribution, summed and published with the projection. */
  const aggregate = async (mine: VerifiedArtifact, signal: AbortSignal): Promise<void> => {
    const others = [...members.keys()].filter(p => p !== self)
    const found = await waitFor(async () => {
      const recs = (await registry.list()).filter(r => r.manifest.expertId.endsWith(CONTRIBUTION_SUFFIX) && others.includes(r.manifest.siteId))
      const latest = new Map<string, string>()
      for (const r of recs.sort((a, b) => a.storedAt - b.storedAt)) latest.set(r.manifest.siteId, r.hash)
      return latest.size === others.length ? latest : undefined
    }, signal)
    const contributions = [{ peerId: self, hash: mine.hash }, ...[...found].map(([peerId, hash]) => ({ peerId, hash }))]
    const collected = await collectContributions(contributions, { spec, members }, async (c) => c.peerId === self ? mine.bytes : (await registry.load(c.hash)).bytes, { signal })
    const summed = summedRelease(collected, routing, init.federation)
    const published = await exchange.publish(routingPublication(init.site, init.slot, summed, collected.length, learner.expertParams()), { signal })
    log.info('moe.release-1.summed', { contributions: collected.length, hash: published.hash })
  }

  /** Phase 1 at any member: release, hold, announce to the aggregator until its routing artifact is here. */
  const releaseOne = async (signal: AbortSignal): Promise<VerifiedArtifact> => {
    const moments = await releaseSiteGlobal({ rows: init.data.x, n: init.data.n, dim: init.data.dim }, routing, { ledger, random: components.random }, { label: init.federation, signal })
    const mine = await buildContribution({ identity, spec, site: init.site, slot: init.slot, sampleCount: init.data.n, params: learner.expertParams(), moments }, { clock })
    log.info('moe.release-1.made', { hash: mine.hash, aggregator: init.aggregator })
    if (init.aggregator === self) {
      await aggregate(mine, signal)
    } else {
      held.hold(mine.hash, mine.bytes)
      try {
        await waitFor(async () => {
          if (await routingArtifact() !== undefined) return true
          if (site.host.connectedPeers().includes(init.aggregator)) {
            await site.host.request(init.aggregator, EXPERTS_ANNOUNCE_PROTOCOL, { header: { kind: 'announce', hash: mine.hash, size: mine.bytes.byteLength } }, { schema: Ack, timeoutMs: EXPERTS_ANNOUNCE_TIMEOUT_MS, signal })
              .catch((err: Error) => { log.debug('moe.release-1.announce-failed', { error: err.message }) })
          }
          return undefined
        }, signal, ANNOUNCE_EVERY_MS)
      } finally {
        held.drop(mine.hash)
      }
    }
    return mine
  }

  const setup: MoeSite['setup'] = async ({ signal }) => {
    const mine = await own()
    if (mine !== undefined && hasComponents(mine.router)) {
      // A restart: the release was made and charged before; read it back, never release twice.
      release = componentsFromTensors(mine.router, init.slot)
      const r = await routingArtifact()
      if (r === undefined) throw new FederationError(`${init.site} published its release 2 but holds no routing artifact of ${init.aggregator}`)
      routingHash = r.hash
      projection = readSummedRelease(r.router).projection
      log.info('moe.setup.resumed', { expert: expertId, version: mine.manifest.version })
      return
    }
    if (await routingArtifact() === undefined) await releaseOne(signal)
    const r = await waitFor(routingArtifact, signal)
    routingHash = r.hash
    projection = readSummedRelease(r.router).projection
    release = await releaseSiteComponents({ expert: init.slot, rows: init.data.x, labels: init.data.y, n: init.data.n }, projection, routing, { ledger, random: components.random }, { label: init.federation, signal })
    await serial(async () => { await publish(0, false, signal) })
    log.info('moe.setup.done', { projection: r.hash, components: release.components.length })
  }

  // ---- assembly -----------------------------------------------------------------

  const densityRouter: RouterFactory = (ctx) => {
    if (projection === undefined) throw new FederationError('assembly before the routing projection is known')
    const releases = ctx.experts.flatMap((t, slot) => hasComponents(t) ? [componentsFromTensors(t, slot)] : [])
    const router = buildDensityRouter(projection, releases, spec.experts, routing)
    return { kind: 'density', scores: (_h, n, x) => softmaxRows(scoreRows(router, x, n), n, spec.experts) }
  }

  const assemble = async (): Promise<void> => {
    const last = await site.roundLog().last()
    if (last === undefined) return
    const flat = await site.roundLog().aggregate(last.round)
    if (flat === undefined) throw new FederationError(`round ${last.round} has no committed aggregate`)
    const committed = unflattenTensors(flat, learner.getShared())
    // The learned router is never used (density routing replaces it) but the model holds one.
    const shared: TensorMap = new Map([...learner.model.getParams()].filter(([n]) => n.startsWith('shared.')))
    for (const [n, t] of committed) shared.set(n, t)
    const usable = (await registry.usable()).filter(r => isExpertArtifact(r.manifest))
    const experts = await Promise.all(usable.map(async r => await registry.load(r.hash, { spec })))
    const next = assembleMoe({ spec, shared, experts, router: densityRouter, selection: { topK: spec.topK, renormalise: true } })
    const previous = model
    model = next
    predictor = createPredictor(next)
    previous?.dispose()
    const ids = next.slots.flatMap(s => s === undefined ? [] : [`${s.id}@v${s.manifest.version}`])
    log.info('moe.assembled', { round: last.round, experts: ids, count: ids.length })
  }

  const finish: MoeSite['finish'] = async (target, { signal }) => {
    const mine = await own()
    const done = mine !== undefined && mine.manifest.metrics.final === 1 && (mine.manifest.metrics.trainedRounds ?? 0) >= target
    if (!done) await serial(async () => { await publish((await site.roundLog().last())?.round ?? 0, true, signal) })
    await serial(assemble)
    // A member's final expert that arrives later joins the served model.
    offStored ??= exchange.on('stored', ({ record }) => {
      if (!isExpertArtifact(record.manifest)) return
      serial(assemble).catch((err: Error) => { log.error('moe.assemble.failed', { error: err.message }) })
    })
  }

  return {
    start: async () => {
      if (started) return
      started = true
      await serveBlobs(site.host, held, { logger: log.child('blobs') })
      await exchange.start()
      if (init.publishEvery > 0) {
        offCommit = site.on('commit', ({ round }) => {
          if (round % init.publishEvery !== 0 || release === undefined) return
          serial(async () => { await publish(round, false) }).catch((err: Error) => { log.error('moe.publish.failed', { round, error: err.message }) })
        })
      }
    },
    stop: async () => {
      if (!started) return
      started = false
      offCommit?.()
      offStored?.()
      offStored = undefined
      await chain
      await exchange.stop()
      model?.dispose()
      model = undefined
      predictor = undefined
    },
    setup,
    finish,
    predict: async (body) => {
      if (predictor === undefined) throw new HttpError(503, 'this site has no assembled model to serve yet (the federation has not finished its rounds)')
      return await predictor(body)
    },
    assembled: () => model?.slots.flatMap(s => s === undefined ? [] : [s.id]) ?? []
  }
}
