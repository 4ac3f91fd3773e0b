/**
 * The coordinator role, taken by whichever site the election names. It
 * drives the pure round machine (coordinator/round.ts): open the round with
 * the live members, take their updates (stale and future rounds, strangers
 * and repeats are the machine's to judge), close on all-in or at the
 * deadline, aggregate with the strategy, announce the commit to every live
 * member, then write it to its own log. Order matters: members hold a round
 * before the coordinator does, so a coordinator that dies after announcing
 * loses nothing, and one that dies before leaves nothing behind.
 *
 * A missed quorum or a participant cut off for misbehaving reopens the round
 * (nothing committed); updates already received for the round are fed to the
 * new attempt again, since nothing of the failed attempt counted.
 *
 * Members hold a commit before the coordinator has written it, so they train
 * and send the next round's update while the coordinator is still announcing
 * to the others, writing, or about to open. Such an update is *held early*
 * (and acknowledged) when it is for exactly the round this coordinator opens
 * next and was computed from exactly the commit it is publishing or last
 * wrote; it enters the round when the round opens, like any other. Without
 * this, every member resent its whole update with backoff until the round
 * opened, and more often the more members the coordinator announced to.
 */
import type { Clock, Logger, Random } from '../../coordinator/components.ts'
import { summarizeRoundBytes } from '../../coordinator/compression/accounting.ts'
import { createRoundMachine, type RoundEvent, type RoundMachine, type RoundOutcome, type UpdateInput } from '../../coordinator/round.ts'
import type { JsonValue, Strategy } from '../../coordinator/strategies/types.ts'
import type { ModelService } from '../mesh/model.ts'
import { RoundConflictError } from '../errors.ts'
import { recordFromOutcome, type RoundLog } from '../round-log.ts'
import { encodeCommitBundle } from './bundle.ts'
import type { CommitPath } from './commits.ts'
import type { FederationSettings } from './config.ts'
import type { Presence } from './presence.ts'
import type { SecureSum } from './secagg.ts'

export interface IncomingUpdate extends UpdateInput {
  peerId: string
  baseHash: string | undefined
}

export interface Verdict { accepted: boolean, reason?: string }

export interface CoordinatorEvents {
  aborted: (e: { round: number, attempt: number, reason: string, error?: { name: string, message: string } }) => void
  opened: (e: { round: number, attempt: number, participants: string[] }) => void
  /** The loop should look again (a round committed, reopened, or given up). */
  wake: () => void
}

/** Runs one secure-aggregation round with these members (peer ids); see secagg.ts. */
export interface SecureRounds {
  run: (round: number, attempt: number, peers: string[]) => Promise<SecureSum>
}

export interface CoordinatorRoleInit {
  settings: FederationSettings
  vectorLength: number
  /** Set when the federation aggregates securely: then no member pushes an update. */
  secure?: SecureRounds
  /** Live members needed to open a round. */
  minParticipants: number
  specHash: string
  announceTimeoutMs: number
}

export interface CoordinatorRoleComponents {
  clock: Clock
  logger: Logger
  /** The federation's seeded source: round seeds must not depend on which site coordinates. */
  roundRandom: () => Random
  strategy: Strategy
  log: RoundLog
  commits: CommitPath
  presence: Presence
  model: ModelService
  selfPeerId: string
  events: CoordinatorEvents
}

export interface CoordinatorRole {
  /** Called by the site's loop while this site is elected: catch up once per term, then open round `round` if it can. */
  lead: (round: number, options?: { signal?: AbortSignal }) => Promise<void>
  /** Drops the machine (another site was elected); nothing of an open round was committed. */
  retire: () => void
  receive: (u: IncomingUpdate) => Verdict
  /** A participant was cut off: reopen the current attempt without it. */
  dropParticipant: (site: string) => void
  isLeading: () => boolean
  stop: () => void
}

export function createCoordinatorRole (init: CoordinatorRoleInit, components: CoordinatorRoleComponents): CoordinatorRole {
  const { settings } = init
  const { clock, presence, commits, events } = components
  const log = components.logger
  let machine: RoundMachine | undefined
  let held = new Map<string, UpdateInput>()
  let heldRound = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  let finalizing = false
  /** Members this coordinator has asked for rounds it missed, this term. */
  const caughtUpWith = new Set<string>()
  /** Next-round updates that arrived before the round opened (see the file comment), by site. */
  let early = new Map<string, IncomingUpdate>()
  let earlyRound = 0
  /** The commit being announced: members that took it compute the next round from its aggregate. */
  let publishing: { round: number, aggregateHash: string } | undefined
  let secureBusy = false
  let secureRound_ = 0
  let secureAttempt = 0
  let baseHash = ''

  const participants = (): string[] => presence.live().map(p => presence.siteOf(p)).filter((s): s is string => s !== undefined)

  const clearTimer = (): void => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
  }

  const drop = (): void => {
    clearTimer()
    machine = undefined
    held = new Map()
    heldRound = 0
  }

  /** Early updates outlive a dropped machine (adoption checks their base) but not the term. */
  const forgetEarly = (): void => {
    early = new Map()
    earlyRound = 0
  }

  /** The round this coordinator opens next, and the base its members' updates for it must have. */
  const upcoming = (): { round: number, base: string } => publishing !== undefined
    ? { round: publishing.round + 1, base: publishing.aggregateHash }
    : { round: commits.lastRound() + 1, base: commits.globalHash() }

  /** Holds `u` if it is for the round that opens next and from the base it opens with. */
  const holdEarly = (u: IncomingUpdate, st: ReturnType<RoundMachine['status']> | undefined): Verdict | undefined => {
    if (init.secure !== undefined) return undefined
    const next = upcoming()
    if (u.round !== next.round || u.baseHash !== next.base) return undefined
    // A round already past collecting is the machine's to judge (past-deadline).
    if (st !== undefined && st.round === u.round && st.phase !== 'idle') return undefined
    if (earlyRound !== u.round) { early = new Map(); earlyRound = u.round }
    const had = early.get(u.site)
    if (had !== undefined) return had.nonce === u.nonce ? { accepted: true, reason: 'duplicate' } : { accepted: false, reason: `duplicate-site: another update from '${u.site}' for round ${u.round} is held` }
    early.set(u.site, { ...u, delta: u.delta.slice() })
    log.debug('update.held-early', { round: u.round, site: u.site })
    return { accepted: true }
  }

  /** At open: the early updates made from this round's base join the held ones, to be fed in. */
  const adoptEarly = (round: number): void => {
    if (earlyRound === round) {
      for (const [site, u] of early) {
        if (u.baseHash !== baseHash) continue
        if (heldRound !== round) { held = new Map(); heldRound = round }
        if (!held.has(site)) held.set(site, u)
      }
    }
    if (earlyRound <= round) { early = new Map(); earlyRound = 0 }
  }

  const schedule = (): void => {
    clearTimer()
    const st = machine?.status()
    if (st?.phase !== 'collecting' || st.deadline === undefined) return
    timer = setTimeout(onDeadline, Math.max(0, st.deadline - clock.now()) + 1)
  }

  /** After a reopen: what arrived for this round counts again, once, in the new attempt. */
  const refeed = (m: RoundMachine): void => {
    const st = m.status()
    if (heldRound !== st.round) return
    for (const site of [...held.keys()].sort()) {
      if (!st.participants.includes(site)) continue
      m.receiveUpdate(held.get(site)!)
    }
  }

  const handle = (m: RoundMachine, list: RoundEvent[]): void => {
    for (const e of list) {
      if (e.type === 'quorum-missed') events.aborted({ round: e.round, attempt: e.attempt, reason: 'quorum-missed', error: e.error })
      if (e.type === 'aborted') events.aborted({ round: e.round, attempt: e.attempt, reason: e.reason })
      if (e.type === 'open') {
        events.opened({ round: e.round, attempt: e.attempt, participants: e.participants })
        refeed(m)
      }
    }
    if (m.status().phase === 'ready') void finalize(m)
    else schedule()
    events.wake()
  }

  function onDeadline (): void {
    timer = undefined
    const m = machine
    if (m === undefined) return
    handle(m, m.tick({ participants: participants() }))
  }

  /**
   * Announces a round outcome to every live member, then writes it here.
   * False when a member already holds another commit of this round (another
   * coordinator's landed first): nothing is written, ours is dropped.
   */
  const publish = async (outcome: RoundOutcome): Promise<{ published: boolean, aggregateHash: string }> => {
    const round = outcome.round
    const { record, aggregateBytes, strategyState } = recordFromOutcome(outcome, await components.log.lastHash())
    const bundle = { record, aggregateBytes, strategyState, facts: { bytes: outcome.bytes } }
    const commit = encodeCommitBundle(bundle)
    const peers = presence.live().filter(p => p !== components.selfPeerId)
    publishing = { round, aggregateHash: record.aggregateHash }
    try {
      return await announceAndWrite(round, peers, commit, bundle, record.aggregateHash)
    } finally {
      publishing = undefined
    }
  }

  const announceAndWrite = async (round: number, peers: string[], commit: ReturnType<typeof encodeCommitBundle>, bundle: Parameters<CommitPath['commitOwn']>[0], aggregateHash: string): Promise<{ published: boolean, aggregateHash: string }> => {
    const answers = await Promise.allSettled(peers.map(async p => await components.model.announce(p, commit, { signal: AbortSignal.timeout(init.announceTimeoutMs) })))
    const conflict = answers.findIndex(a => a.status === 'fulfilled' && !a.value.accepted && a.value.reason?.startsWith('conflict') === true)
    if (conflict >= 0) {
      log.warn('round.conflict', { round, peer: peers[conflict] })
      return { published: false, aggregateHash }
    }
    answers.forEach((a, i) => {
      if (a.status === 'rejected') log.info('announce.failed', { round, peer: peers[i], error: (a.reason as Error).message })
      else if (!a.value.accepted) log.info('announce.refused', { round, peer: peers[i], reason: a.value.reason })
    })
    try {
      await commits.commitOwn(bundle)
    } catch (err) {
      if (!(err instanceof RoundConflictError)) throw err
      log.warn('round.conflict', { round, error: err.message })
      return { published: false, aggregateHash }
    }
    return { published: true, aggregateHash }
  }

  const strategyState = async (): Promise<JsonValue> => {
    const last = commits.lastRound()
    return last === 0 ? null : (await components.log.strategyState(last))!
  }

  const finalize = async (m: RoundMachine): Promise<void> => {
    if (finalizing || machine !== m || m.status().phase !== 'ready') return
    finalizing = true
    clearTimer()
    try {
      if (commits.lastRound() !== m.status().round - 1) { drop(); return }
      const outcome = m.aggregate({ global: await commits.global(), strategy: components.strategy, state: await strategyState() })
      const { published, aggregateHash } = await publish(outcome)
      if (!published) {
        // Another coordinator's round landed first: ours is dropped, theirs is fetched.
        drop()
        caughtUpWith.clear()
        return
      }
      if (machine === m) {
        m.commit({ aggregateHash })
        held = new Map()
      }
    } catch (err) {
      log.error('round.finalize.failed', { error: err })
      if (machine === m && m.status().phase !== 'idle') handle(m, m.abort(`finalize failed: ${(err as Error).message}`, { participants: participants() }))
    } finally {
      finalizing = false
      events.wake()
    }
  }

  /**
   * A round under secure aggregation: no per-site update ever reaches this
   * site, only the sum of the survivors' clipped inputs. Their mean is the
   * round's one pseudo-gradient (members weigh equally: the sum hides who
   * sent what); the record lists the survivors as participants.
   */
  const secureRound = async (secure: SecureRounds, round: number, attempt: number, peers: string[]): Promise<void> => {
    const invited = peers.map(p => presence.siteOf(p)!).sort()
    events.opened({ round, attempt, participants: invited })
    try {
      const result = await secure.run(round, attempt, peers)
      log.info('secagg.round', { round, attempt, contributors: result.contributors.length, recovered: result.recovered.length })
      if (commits.lastRound() !== round - 1) return
      const sites = result.contributors.map(p => presence.siteOf(p) ?? p)
      const order = sites.map((s, i) => [s, i] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      const mean = result.sum.map(v => v / sites.length)
      const aggregated = components.strategy.aggregate([{ site: 'secure-sum', delta: mean, samples: 1 }], await commits.global(), await strategyState())
      const outcome: RoundOutcome = {
        round,
        attempt,
        seed: components.roundRandom().fork(`round/${round}`).int(2 ** 32),
        specHash: init.specHash,
        strategy: components.strategy.name,
        participants: order.map(([s]) => s),
        dropouts: invited.filter(s => !sites.includes(s)),
        updates: order.map(([s, i]) => ({ site: s, nonce: `${round}:${s}`, samples: result.samples.get(result.contributors[i]!) ?? 1 })),
        next: aggregated.next,
        state: aggregated.state,
        bytes: summarizeRoundBytes(sites.map(site => ({ site, rawBytes: 4 * init.vectorLength, wireBytes: 4 * init.vectorLength })))
      }
      await publish(outcome)
    } catch (err) {
      const e = err as Error
      log.warn('secagg.round.failed', { round, attempt, error: e.name, message: e.message })
      events.aborted({ round, attempt, reason: 'secure-aggregation-failed', error: { name: e.name, message: e.message } })
    }
  }

  return {
    lead: async (round, options = {}) => {
      // Before it opens anything, a coordinator takes every round the others
      // committed: from all live members when it is elected, then from each
      // member that comes back (a restarted coordinator may be the one behind).
      const fresh = presence.live().filter(p => p !== components.selfPeerId && !caughtUpWith.has(p))
      if (fresh.length > 0) {
        await commits.catchUp(fresh, options)
        for (const p of fresh) caughtUpWith.add(p)
        if (commits.lastRound() >= round) return
      }
      if (finalizing) return
      const secure = init.secure
      if (secure !== undefined) {
        const peers = presence.live()
        if (secureBusy || peers.length < init.minParticipants) return
        if (secureRound_ !== round) { secureRound_ = round; secureAttempt = 0 }
        secureBusy = true
        finalizing = true
        void secureRound(secure, round, ++secureAttempt, peers).finally(() => {
          secureBusy = false
          finalizing = false
          events.wake()
        })
        return
      }
      if (machine !== undefined) {
        const st = machine.status()
        if (st.round === round) {
          if (st.phase === 'idle') open(machine)
          return
        }
        if (st.phase !== 'idle') drop()
        else machine.advanceTo(round)
      }
      machine ??= createRoundMachine({
        specHash: init.specHash,
        vectorLength: init.vectorLength,
        roundTimeoutMs: settings.roundTimeoutMs,
        quorumFraction: settings.quorumFraction,
        minUpdates: settings.minUpdates,
        nextRound: round
      }, { clock, random: components.roundRandom(), logger: log.child('round') })
      open(machine)
    },
    retire: () => {
      if (machine !== undefined) log.info('coordinator.retired', { round: machine.status().round })
      drop()
      forgetEarly()
      caughtUpWith.clear()
    },
    receive: (u) => {
      const m = machine
      const heldEarly = m?.status().phase === 'collecting' && m.status().round === u.round ? undefined : holdEarly(u, m?.status())
      if (heldEarly !== undefined) return heldEarly
      // A member whose round is committed here already (it restarted after the rounds ended) must catch up, not wait for a round that will not open.
      if (m === undefined && u.round <= commits.lastRound()) return { accepted: false, reason: `stale-round: round ${u.round} is already committed here (last ${commits.lastRound()})` }
      if (m === undefined) return { accepted: false, reason: 'not-collecting: this coordinator has not opened a round yet' }
      const st = m.status()
      if (u.round === st.round && st.phase === 'collecting' && u.baseHash !== baseHash) {
        return { accepted: false, reason: `base-mismatch: update for round ${u.round} was computed from ${String(u.baseHash).slice(0, 12)}, the committed parameters hash to ${baseHash.slice(0, 12)}` }
      }
      const result = m.receiveUpdate(u)
      if (result.status === 'rejected' && result.reason === 'future-round' && (st.phase === 'collecting' || st.phase === 'idle')) {
        // A member ahead of us (not merely one that took our announcement
        // before our own write): a round was committed elsewhere. Catch up.
        caughtUpWith.clear()
        events.wake()
      }
      if (result.status === 'rejected') return { accepted: false, reason: `${result.reason}: ${result.message}` }
      if (result.status === 'duplicate') return { accepted: true, reason: 'duplicate' }
      if (heldRound !== st.round) { held = new Map(); heldRound = st.round }
      held.set(u.site, { ...u, delta: u.delta.slice() })
      if (m.status().phase === 'ready') void finalize(m)
      return { accepted: true }
    },
    dropParticipant: (site) => {
      held.delete(site)
      const m = machine
      if (m === undefined || m.status().phase !== 'collecting' || !m.status().participants.includes(site)) return
      handle(m, m.abort(`participant ${site} was cut off`, { participants: participants().filter(s => s !== site) }))
    },
    isLeading: () => machine !== undefined,
    stop: () => { drop(); forgetEarly() }
  }

  function open (m: RoundMachine): void {
    const list = participants()
    if (list.length < init.minParticipants) return
    baseHash = commits.globalHash()
    const opened = m.open(list)
    adoptEarly(opened.round)
    handle(m, [opened])
  }
}
