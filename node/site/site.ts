/**
 * A site of the federation: the mesh host, membership with heartbeats and
 * election, the member role (train, privatise, compress, send), the
 * coordinator role (the pure round machine, taken when elected), the durable
 * commit path with catch-up, and the hooks others build on (a `commit` event
 * after every committed round, `status()`).
 *
 *   const site = createSite(init, { clock, random, logger, learner })
 *   await site.start()
 *   await site.run({ untilRound: 20 })   // or site.runRounds(20)
 *   site.on('commit', ({ round, aggregateHash, participants, bytes }) => ...)
 *   await site.stop()
 */
import { createSeededRandom } from '../../coordinator/components.ts'
import { createCompressor } from '../../coordinator/compression/combined.ts'
import { createStrategy } from '../../coordinator/strategies/registry.ts'
import { SiteImpersonationError } from '../../protocols/errors.ts'
import { MEMBERSHIP_PROTOCOL } from '../../protocols/membership/constants.ts'
import { MODEL_PROTOCOL, MODEL_TIMEOUT_MS } from '../../protocols/model/constants.ts'
import { SECAGG_PROTOCOL } from '../../protocols/secagg/constants.ts'
import { flattenTensors } from '../../protocols/tensors.ts'
import { UPDATE_PROTOCOL, UPDATE_TIMEOUT_MS } from '../../protocols/update/constants.ts'
import { createAuditLog, type AuditKind, type AuditLog } from '../audit.ts'
import { ConfigError, SiteStateError } from '../errors.ts'
import { createSiteHost, type PeerTraffic } from '../mesh/host.ts'
import { createMembership } from '../mesh/membership.ts'
import { createModelService } from '../mesh/model.ts'
import { createUpdateService } from '../mesh/update.ts'
import { createSiteMetrics } from '../metrics.ts'
import { createPrivacyLedger, type PrivacyLedger } from '../privacy/ledger.ts'
import { createPrivateUpdates, resolvePrivacyPlan } from '../privacy/updates.ts'
import { createRoundLog, type RoundLog } from '../round-log.ts'
import { openSiteStore, type SiteStore } from '../store.ts'
import { decodeUpdate } from './bundle.ts'
import { createCommitPath, type CommitPath, type Committed } from './commits.ts'
import { parseFederationSettings } from './config.ts'
import { createCoordinatorRole, type CoordinatorRole, type SecureRounds } from './coordinator.ts'
import { createMemberRole, type MemberRole } from './member.ts'
import { createPresence, type Presence } from './presence.ts'
import { createSecAggMember, identitySigner, peerIdVerifier, runSecureAggregation, serveSecAgg } from './secagg.ts'
import { createEmitter, createWaker } from './signals.ts'
import type { CommitBytes, Site, SiteComponents, SiteEvents, SiteInit, SiteStatus } from './types.ts'

export type { CommitBytes, CommitEvent, Site, SiteComponents, SiteEvents, SiteInit, SiteStatus } from './types.ts'

const PROTOCOLS = [MEMBERSHIP_PROTOCOL, UPDATE_PROTOCOL, MODEL_PROTOCOL]
/** Under secure aggregation every member must speak secagg: a hello without it is refused. */
const SECURE_PROTOCOLS = [...PROTOCOLS, SECAGG_PROTOCOL]

export function createSite (init: SiteInit, components: SiteComponents): Site {
  const settings = parseFederationSettings(init.federation)
  if (!/^[0-9a-f]{64}$/.test(init.specHash)) throw new ConfigError(`specHash must be a sha256 hex digest, got '${init.specHash}'`)
  const { clock, learner } = components
  const log = components.logger
  const self = init.identity.peerId
  const events = createEmitter<SiteEvents>((event, err) => { log.error('listener.failed', { event: String(event), error: err }) })
  const waker = createWaker()
  const host = createSiteHost({ ...init.host, identity: init.identity }, { logger: log.child('mesh'), clock, ...(components.wireTap !== undefined ? { wireTap: components.wireTap } : {}) })
  const membership = createMembership({ hello: { site: init.site, roles: init.roles ?? ['member'], capabilities: ['train'], modelSpecHash: init.specHash, protocols: settings.privacy.secureAggregation.enabled ? SECURE_PROTOCOLS : PROTOCOLS } }, { host, logger: log.child('membership') })
  const updates = createUpdateService({}, { host, logger: log.child('update') })
  const model = createModelService({}, { host, logger: log.child('model') })
  const presence: Presence = createPresence({ self: { peerId: self, site: init.site }, heartbeatIntervalMs: settings.heartbeatIntervalMs, heartbeatTimeoutMs: settings.heartbeatTimeoutMs, priorities: settings.priorities }, { host, membership, clock, logger: log.child('presence') })
  const metrics = components.metrics ?? createSiteMetrics(init.site)
  const stopped = new AbortController()
  const auditedRefusals = new Set<string>()
  let store: SiteStore | undefined
  let audit: AuditLog | undefined
  let roundLog: RoundLog | undefined
  let commits: CommitPath | undefined
  let coordinator: CoordinatorRole | undefined
  let member: MemberRole | undefined
  let ledger: PrivacyLedger | undefined
  let privacy: SiteStatus['privacy'] = null
  let starting: Promise<void> | undefined
  let running = false
  let counted = new Map<string, PeerTraffic>()

  // Audit appends are queued by the audit log itself; the tail is awaited before the store closes.
  let audited: Promise<unknown> = Promise.resolve()
  const record = (kind: AuditKind, data: Record<string, unknown>): void => {
    if (audit === undefined) return
    audited = audit.append(kind, data).catch((err: Error) => { log.warn('audit.failed', { kind, error: err.message }) })
  }

  const refreshPrivacy = async (): Promise<void> => {
    if (ledger === undefined) return
    const s = await ledger.status()
    privacy = { spent: s.spent, remaining: s.remaining }
    metrics.epsilonSpent.set(s.spent.epsilon)
    metrics.epsilonRemaining.set(s.remaining.epsilon)
  }

  /** Bytes moved since the last commit, and the per-peer Prometheus counters brought up to date. */
  const trafficSinceLastCommit = (): { sent: number, received: number } => {
    let sent = 0
    let received = 0
    const now = host.traffic()
    for (const [peer, t] of now) {
      const before = counted.get(peer) ?? { bytesIn: 0, bytesOut: 0 }
      sent += t.bytesOut - before.bytesOut
      received += t.bytesIn - before.bytesIn
      if (t.bytesOut > before.bytesOut) metrics.bytesSent.inc({ peer }, t.bytesOut - before.bytesOut)
      if (t.bytesIn > before.bytesIn) metrics.bytesReceived.inc({ peer }, t.bytesIn - before.bytesIn)
    }
    counted = now
    return { sent, received }
  }

  const onCommitted = ({ record: r, facts, via }: Committed): void => {
    metrics.roundsCommitted.inc()
    metrics.peersConnected.set(host.connectedPeers().length)
    const moved = trafficSinceLastCommit()
    record('round:committed', { round: r.round, aggregateHash: r.aggregateHash, participants: r.participants, dropouts: r.dropouts, via })
    const bytes: CommitBytes = { sentByThisSite: moved.sent, receivedByThisSite: moved.received, ...(facts.bytes !== undefined ? { round: facts.bytes } : {}) }
    events.emit('commit', { round: r.round, aggregateHash: r.aggregateHash, participants: r.participants, dropouts: r.dropouts, via, bytes })
    waker.wake()
  }

  /** A peer that broke the wire format (NaN, tampered or malformed frames) is shut out until restart. */
  const cutOff = async (peerId: string, error: Error): Promise<void> => {
    if (presence.isCutOff(peerId)) return
    const site = presence.siteOf(peerId)
    presence.cutOff(peerId)
    auditedRefusals.add(peerId)
    if (site !== undefined) coordinator?.dropParticipant(site)
    log.warn('peer.cut-off', { peer: peerId, site, error: error.name, message: error.message })
    record('peer:refused', { peer: peerId, site, code: error.name, reason: error.message, by: 'us', cutOff: true })
    events.emit('peer:cut-off', { peerId, site, error: { name: error.name, message: error.message } })
    await host.refuse(peerId, `${error.name}: ${error.message}`).catch(() => {})
  }

  const wire = (): void => {
    host.on('peer:misbehaved', ({ peerId, error }) => { void cutOff(peerId, error) })
    host.on('peer:refused', ({ peerId, reason }) => {
      // The gater refuses a blocked peer at every redial: audit each reason once.
      const key = `${peerId}\u0000${reason}`
      if (auditedRefusals.has(key) || auditedRefusals.has(peerId) || reason.startsWith('refused earlier')) return
      auditedRefusals.add(key)
      record('peer:refused', { peer: peerId, reason, by: 'gater' })
    })
    membership.on('member:join', ({ peerId, hello }) => { record('peer:joined', { peer: peerId, site: hello.site }) })
    membership.on('member:leave', ({ peerId }) => { record('peer:left', { peer: peerId }) })
    membership.on('member:refused', ({ peerId, code, reason, by }) => {
      auditedRefusals.add(peerId)
      record('peer:refused', { peer: peerId, code, reason, by })
    })
    presence.onLeaderChange((leader) => {
      events.emit('coordinator', { peerId: leader?.peerId, site: leader?.site, term: leader?.term ?? 0 })
      waker.wake()
    })
  }

  const setUp = async (): Promise<void> => {
    store = typeof init.store === 'string' ? await openSiteStore(init.store) : init.store
    roundLog = createRoundLog(store)
    audit = components.audit ?? createAuditLog(store, { clock })
    const template = learner.getShared()
    const initial = flattenTensors(template)
    const vectorLength = initial.length
    const members = new Set([...init.host.allowlist, self]).size
    const plan = resolvePrivacyPlan({ privacy: settings.privacy, sites: members, vectorLength, strategy: settings.strategy, compression: settings.compression })
    const budget = settings.privacy.budget
    if (budget !== undefined) ledger = createPrivacyLedger(store, { epsilonBudget: budget.epsilon, delta: budget.delta }, { clock })
    const privateUpdates = budget === undefined && settings.privacy.clipNorm === undefined
      ? undefined
      : createPrivateUpdates({ settings: settings.privacy, plan }, { ledger: ledger ?? noLedger(), random: components.random.fork('privacy'), logger: log })
    commits = createCommitPath({ template, initial }, { log: roundLog, learner, model, logger: log.child('commits'), onCommitted })
    await commits.load()
    // A member that does not answer within a round's time catches up later; the round goes on.
    const exchangeMs = Math.min(settings.roundTimeoutMs, MODEL_TIMEOUT_MS, UPDATE_TIMEOUT_MS)
    const sa = plan.secureAggregation
    // A secure round needs `threshold` members at every stage: fewer cannot even start.
    const minParticipants = Math.max(settings.minParticipants ?? Math.floor(members / 2) + 1, sa?.threshold ?? 1)
    const verify = peerIdVerifier()
    const secure: SecureRounds | undefined = sa === undefined
      ? undefined
      : {
          run: async (round, attempt, peers) => await runSecureAggregation({
            round,
            roundId: `${init.specHash.slice(0, 16)}/${round}/${attempt}`,
            participants: peers,
            params: { n: peers.length, threshold: sa.threshold, vectorLength, ringBits: sa.ringBits, scale: sa.scale, clipNorm: settings.privacy.clipNorm!, baseHash: commits!.globalHash() },
            timeoutMs: exchangeMs
          }, { host, selfPeerId: self, local: async (req, signal) => await secureMember!.answer(self, req, signal), verify, logger: log.child('secagg') })
        }
    coordinator = createCoordinatorRole({ settings, minParticipants, specHash: init.specHash, vectorLength, announceTimeoutMs: exchangeMs, ...(secure !== undefined ? { secure } : {}) }, {
      clock,
      logger: log.child('coordinator'),
      roundRandom: () => createSeededRandom(`forgemesh/rounds/${String(settings.seed)}`),
      strategy: createStrategy(settings.strategy),
      log: roundLog,
      commits,
      presence,
      model,
      selfPeerId: self,
      events: {
        aborted: (e) => {
          metrics.roundsAborted.inc()
          record('round:aborted', { ...e })
          events.emit('round:aborted', e)
        },
        opened: (e) => { events.emit('round:opened', e) },
        wake: () => { waker.wake() }
      }
    })
    // Under secure aggregation the ring quantisation is the compression.
    const compressor = settings.compression.kind === 'none' || sa !== undefined ? undefined : createCompressor(settings.compression, { length: vectorLength })
    member = createMemberRole({ site: init.site, selfPeerId: self, localSteps: settings.localSteps, template, updateTimeoutMs: exchangeMs }, {
      clock,
      logger: log.child('member'),
      learner,
      commits,
      updates,
      coordinator,
      store,
      metrics,
      ...(privateUpdates !== undefined ? { privacy: privateUpdates } : {}),
      ...(compressor !== undefined ? { compressor } : {}),
      onCharged: async (round, entry) => {
        record('privacy:spent', { round, label: `update round ${round}`, epsilonSpent: entry.spentAfter.epsilon, delta: entry.spentAfter.delta })
        await refreshPrivacy()
      },
      onRefused: (round, err) => {
        record('privacy:refused', { round, reason: err.message })
        events.emit('privacy:refused', { round, message: err.message })
      },
      onSent: (sent) => { events.emit('update:sent', sent) }
    })
    await refreshPrivacy()
    const c = commits
    const coord = coordinator
    updates.onUpdate((u) => {
      if (presence.isCutOff(u.peerId)) return { accepted: false, reason: 'refused: this peer was cut off' }
      const site = presence.siteOf(u.peerId)
      if (site === undefined) return { accepted: false, reason: 'not-a-member: say hello first' }
      if (u.header.site !== site) throw new SiteImpersonationError(`peer ${u.peerId} said hello as '${site}' but sent an update as '${u.header.site}'`)
      let decoded: ReturnType<typeof decodeUpdate>
      try {
        decoded = decodeUpdate(u.header.meta, u.tensors, template, vectorLength)
      } finally {
        // decodeUpdate copies (flattens or decompresses) into the delta: the receive buffer can go back.
        u.release()
      }
      const { nonce, delta, wireBytes } = decoded
      presence.heard(u.peerId)
      if (presence.leader()?.peerId !== self) return { accepted: false, reason: 'not-coordinator: this site does not coordinate now' }
      return coord.receive({ peerId: u.peerId, baseHash: u.header.baseHash, round: u.header.round, site, nonce, delta, samples: u.header.numSamples ?? 0, wireBytes })
    })
    model.onAnnounce(async ({ peerId, info, tensors }, signal) => {
      if (presence.isCutOff(peerId)) return { accepted: false, reason: 'refused: this peer was cut off' }
      if (presence.siteOf(peerId) === undefined) return { accepted: false, reason: 'not-a-member: say hello first' }
      presence.heard(peerId)
      return await c.accept(peerId, info, tensors, signal)
    })
    model.provideCommits(async (round) => await c.provide(round))
    const m = member
    const secureMember = sa === undefined
      ? undefined
      : createSecAggMember({
        selfPeerId: self,
        random: components.random.fork('secagg'),
        sign: identitySigner(init.identity),
        verify,
        logger: log.child('secagg'),
        isLeader: (peerId) => presence.leader()?.peerId === peerId,
        next: () => ({ round: c.lastRound() + 1, baseHash: c.globalHash() }),
        behind: (peerId) => { void c.catchUp([peerId]).then(() => { waker.wake() }) },
        input: async (round, signal) => await m.input(round, signal)
      })
    if (secureMember !== undefined) await serveSecAgg(host, secureMember)
    wire()
    await membership.start()
    await updates.start()
    await model.start()
    await host.start()
    counted = host.traffic()
    presence.start()
    log.info('site.started', { site: init.site, peer: self, round: c.lastRound(), strategy: settings.strategy.kind, compression: settings.compression.kind })
  }

  const started = (): { commits: CommitPath, coordinator: CoordinatorRole, member: MemberRole } => {
    if (commits === undefined || coordinator === undefined || member === undefined || starting === undefined) throw new SiteStateError('the site is not started: call start() first')
    if (stopped.signal.aborted) throw new SiteStateError('the site is stopped')
    return { commits, coordinator, member }
  }

  const secureMode = settings.privacy.secureAggregation.enabled
  const run: Site['run'] = async ({ untilRound, signal }) => {
    const { commits: c, coordinator: coord, member: m } = started()
    if (running) throw new SiteStateError('the site is already running rounds')
    running = true
    const sig = signal === undefined ? stopped.signal : AbortSignal.any([signal, stopped.signal])
    // An update the coordinator could not take yet is sent again with backoff: it may be large.
    let retries = 0
    let retryRound = 0
    try {
      while (c.lastRound() < untilRound) {
        sig.throwIfAborted()
        const round = c.lastRound() + 1
        if (round !== retryRound) { retries = 0; retryRound = round }
        const leader = presence.leader()
        let wait = settings.heartbeatIntervalMs
        if (leader !== undefined) {
          if (leader.peerId === self) await coord.lead(round, { signal: sig })
          else coord.retire()
          if (c.lastRound() >= round) continue
          // Under secure aggregation the coordinator asks for inputs; members push nothing.
          if (!m.refused() && !secureMode) {
            const step = await m.step(round, leader, { signal: sig })
            if (step === 'superseded') continue
            if (step === 'retry' || step === 'later') wait = Math.min(settings.retryMs * 2 ** retries++, settings.heartbeatTimeoutMs)
            if (step === 'acked') retries = 0
            if (step === 'stale') {
              await c.catchUp([leader.peerId, ...presence.live().filter(p => p !== self && p !== leader.peerId)], { signal: sig })
              continue
            }
          }
        }
        await waker.wait(wait, sig)
      }
      sig.throwIfAborted()
      return c.lastRound()
    } finally {
      running = false
      if (c.lastRound() >= untilRound) coord.retire()
    }
  }

  return {
    name: init.site,
    peerId: self,
    host,
    start: async (options = {}) => {
      if (stopped.signal.aborted) throw new SiteStateError('a stopped site cannot be started again: create a new one')
      starting ??= setUp()
      options.signal?.throwIfAborted()
      await starting
    },
    stop: async () => {
      if (stopped.signal.aborted) return
      stopped.abort(new SiteStateError('the site was stopped'))
      presence.stop()
      coordinator?.stop()
      await starting?.catch(() => {})
      await membership.stop()
      await host.stop()
      await audited
      if (typeof init.store === 'string') await store?.close()
      log.info('site.stopped', { site: init.site, round: commits?.lastRound() })
    },
    status: () => {
      const leader = starting === undefined ? undefined : presence.leader()
      const live = new Set(presence.live())
      const connected = new Set(host.connectedPeers())
      return {
        site: init.site,
        peerId: self,
        round: commits?.lastRound() ?? 0,
        coordinator: leader === undefined ? null : { ...leader },
        peers: init.host.allowlist.filter(p => p !== self).map(peerId => {
          const site = presence.siteOf(peerId)
          return { peerId, ...(site !== undefined ? { site } : {}), live: live.has(peerId), connected: connected.has(peerId), cutOff: presence.isCutOff(peerId) }
        }),
        privacy
      }
    },
    run,
    runRounds: async (n, options = {}) => await run({ untilRound: started().commits.lastRound() + n, ...options }),
    on: events.on,
    multiaddrs: () => host.multiaddrs(),
    traffic: () => host.traffic(),
    roundLog: () => roundLog ?? (() => { throw new SiteStateError('the site is not started: call start() first') })()
  }
}

/** For clip-only settings without DP: nothing is ever charged, so no ledger is consulted. */
function noLedger (): PrivacyLedger {
  const never = async (): Promise<never> => { throw new ConfigError('privacy: a charge was attempted without privacy.budget') }
  return { canCharge: never, charge: never, spent: never, remaining: never, entries: never, status: never }
}
