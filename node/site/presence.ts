/**
 * Who is in the federation right now, and who coordinates. Every
 * `heartbeatIntervalMs` the site greets each connected member over the
 * membership protocol (a hello with the model-spec hash); an answered hello,
 * or any valid frame from the peer, is a heartbeat in the pure membership
 * view. The coordinator is elected from that view by the pure rule
 * (priority, then smallest peer id), so it changes when the current one goes
 * silent past `heartbeatTimeoutMs`, or at once when its last connection
 * closes. Peers cut off for misbehaving leave the
 * view and stay out until this site restarts.
 */
import type { Clock, Logger } from '../../coordinator/components.ts'
import { createCoordinatorTracker, type Priorities } from '../../coordinator/election.ts'
import { createMembershipView } from '../../coordinator/membership.ts'
import type { SiteHost } from '../mesh/host.ts'
import type { Membership } from '../mesh/membership.ts'

export interface Leader { peerId: string, site: string, term: number }

export interface PresenceInit {
  self: { peerId: string, site: string }
  heartbeatIntervalMs: number
  heartbeatTimeoutMs: number
  priorities: Priorities
}

export interface PresenceComponents {
  host: SiteHost
  membership: Membership
  clock: Clock
  logger: Logger
}

export interface Presence {
  start: () => void
  stop: () => void
  /** Records a heartbeat: any valid message from a member counts. */
  heard: (peerId: string) => void
  /** Live members (self included), by peer id, sorted. */
  live: () => string[]
  /** The site name a member said hello with. */
  siteOf: (peerId: string) => string | undefined
  /** The elected coordinator as of now (re-runs the election). */
  leader: () => Leader | undefined
  /** Takes a peer out of the view for good (until restart). */
  cutOff: (peerId: string) => void
  isCutOff: (peerId: string) => boolean
  /** Called when the elected coordinator changes. */
  onLeaderChange: (listener: (leader: Leader | undefined) => void) => void
}

export function createPresence (init: PresenceInit, components: PresenceComponents): Presence {
  const { host, membership, clock } = components
  const log = components.logger
  const view = createMembershipView({ heartbeatTimeoutMs: init.heartbeatTimeoutMs }, { clock })
  const excluded = new Set<string>()
  const names = new Map<string, string>([[init.self.peerId, init.self.site]])
  const greeting = new Set<string>()
  const listeners = new Set<(leader: Leader | undefined) => void>()
  const liveView = { live: () => view.live().filter(p => !excluded.has(p) && names.has(p)) }
  const tracker = createCoordinatorTracker(liveView, init.priorities)
  let timer: ReturnType<typeof setInterval> | undefined
  let unsubscribe: (() => void) | undefined
  let current: Leader | undefined

  const elect = (): Leader | undefined => {
    view.heartbeat(init.self.peerId)
    const { coordinator, term, changed } = tracker.observe()
    current = coordinator === undefined ? undefined : { peerId: coordinator, site: names.get(coordinator)!, term }
    if (changed) {
      log.info('coordinator.elected', { coordinator: current?.site, peer: coordinator, term })
      for (const l of listeners) l(current)
    }
    return current
  }

  const heard = (peerId: string): void => {
    if (excluded.has(peerId)) return
    const hello = membership.members().get(peerId)
    if (hello !== undefined) names.set(peerId, hello.site)
    if (!names.has(peerId)) return
    view.heartbeat(peerId)
  }

  const greetAll = (): void => {
    const members = membership.members()
    for (const peerId of host.connectedPeers()) {
      if (excluded.has(peerId) || greeting.has(peerId)) continue
      greeting.add(peerId)
      membership.greet(peerId, { signal: AbortSignal.timeout(init.heartbeatTimeoutMs) })
        .then(hello => { if (hello !== undefined) { names.set(peerId, hello.site); heard(peerId) } })
        .catch((err: Error) => { log.debug('heartbeat.failed', { peer: peerId, known: members.has(peerId), error: err.message }) })
        .finally(() => { greeting.delete(peerId); elect() })
    }
    elect()
  }

  return {
    start: () => {
      if (timer !== undefined) return
      const offJoin = membership.on('member:join', ({ peerId }) => { heard(peerId); elect() })
      // A member whose last connection closed is not live, whatever its last heartbeat: a crashed
      // site's sockets reset at once, while a long heartbeat timeout (crowded fleets) would keep it
      // "live" and elected for that long. Reconnecting greets it again (member:join).
      const offLeave = membership.on('member:leave', ({ peerId }) => { view.remove(peerId); elect() })
      unsubscribe = () => { offJoin(); offLeave() }
      timer = setInterval(greetAll, init.heartbeatIntervalMs)
      greetAll()
    },
    stop: () => {
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
      unsubscribe?.()
      unsubscribe = undefined
    },
    heard,
    live: () => { view.heartbeat(init.self.peerId); return liveView.live() },
    siteOf: (peerId) => names.get(peerId) ?? membership.members().get(peerId)?.site,
    leader: elect,
    cutOff: (peerId) => {
      excluded.add(peerId)
      view.remove(peerId)
      elect()
    },
    isCutOff: (peerId) => excluded.has(peerId),
    onLeaderChange: (listener) => { listeners.add(listener) }
  }
}
