/**
 * The fault schedule of a topology, turned into what happens at each round
 * boundary and what happens at a wall-clock time. Pure: the runner applies
 * the actions to the fleet.
 */
import type { Fault, Topology } from './topology.ts'

export type Action =
  | { kind: 'crash', site: string, restartAfterS: number | null }
  | { kind: 'restart', site: string }
  | { kind: 'join', site: string }
  | { kind: 'leave', site: string }
  | { kind: 'partition', groups: string[][], durationS: number }
  | { kind: 'heal' }
  | { kind: 'slow', site: string, factor: number, durationS: number | null }

export interface Schedule {
  /** Actions taken when the federation reaches a round (before it trains it), by round. */
  atRound: Map<number, Action[]>
  /** Actions taken a number of seconds after the run starts. */
  atTime: Array<{ timeS: number, action: Action }>
  /** Sites absent at the start (they join later). */
  lateJoiners: Set<string>
}

function actionOf (f: Fault): Action {
  switch (f.kind) {
    case 'crash': return { kind: 'crash', site: f.site, restartAfterS: f.restartAfterS }
    case 'partition': return { kind: 'partition', groups: f.groups, durationS: f.durationS }
    case 'slow': return { kind: 'slow', site: f.site, factor: f.factor, durationS: f.durationS }
    case 'join': return { kind: 'join', site: f.site }
    case 'leave': return { kind: 'leave', site: f.site }
    default: {
      const never: never = f
      throw new TypeError(`unknown fault ${JSON.stringify(never)}`)
    }
  }
}

export function buildSchedule (topology: Pick<Topology, 'faults'>): Schedule {
  const atRound = new Map<number, Action[]>()
  const atTime: Schedule['atTime'] = []
  const lateJoiners = new Set<string>()
  for (const f of topology.faults) {
    const action = actionOf(f)
    if (f.kind === 'join') lateJoiners.add(f.site)
    if ('round' in f.at) {
      // A join at round 0 is no late join at all.
      if (f.kind === 'join' && f.at.round === 0) { lateJoiners.delete(f.site); continue }
      const list = atRound.get(f.at.round) ?? []
      list.push(action)
      atRound.set(f.at.round, list)
    } else {
      atTime.push({ timeS: f.at.timeS, action })
    }
  }
  atTime.sort((a, b) => a.timeS - b.timeS)
  return { atRound, atTime, lateJoiners }
}

/** The rounds at which the runner must stop driving and act, in order, up to `rounds`. */
export function boundaries (schedule: Schedule, rounds: number): number[] {
  return [...schedule.atRound.keys()].filter(r => r >= 1 && r <= rounds).sort((a, b) => a - b)
}
