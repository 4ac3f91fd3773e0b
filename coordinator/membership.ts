/**
 * The membership view a site builds from heartbeats: who has been heard from
 * within `heartbeatTimeoutMs`. Pure: time comes from the injected clock, so a
 * test or the simulator decides when a member goes silent.
 */
import type { Clock } from './components.ts'
import { InvalidArgumentError } from './errors.ts'

export interface MembershipConfig {
  /** A member not heard from for longer than this is considered gone. */
  heartbeatTimeoutMs: number
}

export interface MemberInfo {
  peer: string
  lastSeen: number
  live: boolean
}

export interface MembershipView {
  /** Records a heartbeat (or any message) from `peer` at the clock's now. */
  heartbeat: (peer: string) => void
  /** Forgets a member (it left the federation). */
  remove: (peer: string) => void
  isLive: (peer: string) => boolean
  /** Live members, sorted by peer id. */
  live: () => string[]
  /** Every member ever heard from, sorted by peer id. */
  members: () => MemberInfo[]
}

export function createMembershipView (config: MembershipConfig, components: { clock: Clock }): MembershipView {
  const { heartbeatTimeoutMs } = config
  if (!(heartbeatTimeoutMs > 0) || !Number.isFinite(heartbeatTimeoutMs)) throw new InvalidArgumentError(`heartbeatTimeoutMs must be a positive number, got ${heartbeatTimeoutMs}`)
  const { clock } = components
  const lastSeen = new Map<string, number>()

  const isLive = (peer: string): boolean => {
    const seen = lastSeen.get(peer)
    return seen !== undefined && clock.now() - seen <= heartbeatTimeoutMs
  }
  const sortedPeers = (): string[] => [...lastSeen.keys()].sort()

  return {
    heartbeat: (peer) => {
      if (peer === '') throw new InvalidArgumentError('heartbeat needs a peer id')
      // Keep the latest: a heartbeat delivered late must not move lastSeen back.
      lastSeen.set(peer, Math.max(lastSeen.get(peer) ?? -Infinity, clock.now()))
    },
    remove: (peer) => { lastSeen.delete(peer) },
    isLive,
    live: () => sortedPeers().filter(isLive),
    members: () => sortedPeers().map(peer => ({ peer, lastSeen: lastSeen.get(peer)!, live: isLive(peer) }))
  }
}
