/**
 * Electing the round coordinator. The coordinator is a role, not a server:
 * every member runs the same pure rule over its own membership view, so
 * members with the same view agree without exchanging votes. The rule: among
 * live members, the highest configured priority wins, then the smallest peer
 * id. When the coordinator goes silent past the heartbeat timeout it drops
 * out of the live set and the next member by the same rule takes over.
 *
 * The tracker adds a term that increases each time the elected member
 * changes, so messages from a deposed coordinator can be told apart.
 */
import type { MembershipView } from './membership.ts'

export type Priorities = ReadonlyMap<string, number> | Readonly<Record<string, number>>

function priorityOf (priorities: Priorities, peer: string): number {
  const p = priorities instanceof Map ? priorities.get(peer) : (priorities as Record<string, number>)[peer]
  return typeof p === 'number' && Number.isFinite(p) ? p : 0
}

/** The elected coordinator among the live members, or undefined if none is live. */
export function electCoordinator (view: Pick<MembershipView, 'live'>, priorities: Priorities = {}): string | undefined {
  let best: string | undefined
  let bestPriority = -Infinity
  for (const peer of view.live()) {
    const p = priorityOf(priorities, peer)
    if (best === undefined || p > bestPriority || (p === bestPriority && peer < best)) {
      best = peer
      bestPriority = p
    }
  }
  return best
}

export interface Leadership {
  coordinator: string | undefined
  term: number
  /** True when this observation changed the coordinator. */
  changed: boolean
}

export interface CoordinatorTracker {
  /** Re-runs the election on the view as it is now. */
  observe: () => Leadership
}

export function createCoordinatorTracker (view: Pick<MembershipView, 'live'>, priorities: Priorities = {}): CoordinatorTracker {
  let current: string | undefined
  let term = 0
  return {
    observe: () => {
      const elected = electCoordinator(view, priorities)
      const changed = elected !== current
      if (changed) {
        current = elected
        term++
      }
      return { coordinator: current, term, changed }
    }
  }
}
