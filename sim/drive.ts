/**
 * Drives a fleet through its rounds and its fault schedule: every live site
 * runs rounds until the next boundary, the boundary's actions are applied,
 * and so on to the last round; timed faults fire on their own while the
 * sites run. A crashed site that restarts is driven on from where its store
 * left it: it catches up on the rounds it missed from its peers.
 */
import type { Logger } from '../coordinator/components.ts'
import type { AgentFleet } from './agent/types.ts'
import { boundaries, type Action, type Schedule } from './schedule.ts'

export interface DriveEvents {
  /** A fault was applied (for the report's per-site event list). */
  onAction?: (action: Action, round: number) => void
  /** How slow a site's local training is (1 = normal). */
  setSlowdown?: (site: string, factor: number) => void
  /** After a late joiner booted (before it trains): e.g. its routing release. */
  afterJoin?: (site: string) => Promise<void>
  /** Before a site leaves for good: e.g. publishing its final expert. */
  beforeLeave?: (site: string) => Promise<void>
  /** The round the federation has reached (highest committed by any site). */
  committedRound: () => number
}

export interface DriveOptions {
  rounds: number
  schedule: Schedule
  signal?: AbortSignal
  /** How long the last catch-up may take once the federation is done (default 120 s); a site still behind then is left behind, with a warning. */
  catchUpTimeoutMs?: number
}

export async function drive (fleet: AgentFleet, options: DriveOptions, events: DriveEvents, components: { logger: Logger }): Promise<void> {
  const log = components.logger
  const { rounds, schedule } = options
  const running = new Map<string, Promise<unknown>>()
  const timers = new Set<NodeJS.Timeout>()
  /** Restarts still due: the run waits for them, so every crashed site that is to come back catches up. */
  const restarts = new Set<Promise<void>>()
  let target = 0

  let stretchSignal = options.signal
  const runSite = (name: string): void => {
    const s = fleet.byName(name)
    if (s.state !== 'up') return
    const life = s.generation
    const goal = target
    // A site still busy with an earlier stretch (a joiner catching up) takes the new goal after it.
    const before = running.get(name) ?? Promise.resolve()
    const p = before.then(async () => {
      if (s.state !== 'up' || s.generation !== life) return
      await s.ops.run({ untilRound: goal }, stretchSignal)
    }).catch((err: unknown) => {
      // A site stopped under its own run (a crash) ends its run; anything else is logged.
      if (s.state === 'up' && s.generation === life) log.warn('sim.site-run-failed', { site: name, error: err instanceof Error ? err.message : String(err) })
    })
    running.set(name, p)
  }

  const later = (seconds: number, fn: () => Promise<void>): Promise<void> => {
    let t: NodeJS.Timeout | undefined
    const done = new Promise<void>(resolve => {
      t = setTimeout(() => {
        timers.delete(t!)
        fn().catch((err: unknown) => { log.warn('sim.fault-failed', { error: err instanceof Error ? err.message : String(err) }) }).finally(resolve)
      }, seconds * 1000)
    })
    timers.add(t!)
    return done
  }

  const apply = async (action: Action): Promise<void> => {
    const round = events.committedRound()
    events.onAction?.(action, round)
    log.info('sim.fault', { round, ...action })
    switch (action.kind) {
      case 'crash':
        await fleet.crash(action.site)
        if (action.restartAfterS !== null) {
          const p = later(action.restartAfterS, async () => { await apply({ kind: 'restart', site: action.site }) })
          restarts.add(p)
          void p.finally(() => restarts.delete(p))
        }
        return
      case 'restart':
        await fleet.restart(action.site)
        runSite(action.site)
        return
      case 'join':
        await fleet.join(action.site)
        await events.afterJoin?.(action.site)
        runSite(action.site)
        return
      case 'leave':
        await events.beforeLeave?.(action.site)
        await fleet.leave(action.site)
        return
      case 'partition':
        await fleet.partition(action.groups)
        void later(action.durationS, async () => { await apply({ kind: 'heal' }) })
        return
      case 'heal':
        await fleet.partition(null)
        return
      case 'slow':
        events.setSlowdown?.(action.site, action.factor)
        if (action.durationS !== null) void later(action.durationS, async () => { events.setSlowdown?.(action.site, 1) })
        return
      default: {
        const never: never = action
        throw new TypeError(`unknown action ${JSON.stringify(never)}`)
      }
    }
  }

  for (const { timeS, action } of schedule.atTime) void later(timeS, async () => { await apply(action) })
  try {
    const stops = [...boundaries(schedule, rounds), rounds]
    for (const at of [0, ...stops]) {
      // Actions "at round r" happen once round r-1 is committed, before round r trains.
      target = Math.min(rounds, Math.max(0, at - 1))
      if (target > events.committedRound()) {
        for (const s of fleet.up()) runSite(s.name)
        await waitForRunning(running)
      }
      for (const action of schedule.atRound.get(at) ?? []) await apply(action)
      if (at === rounds) break
    }
    // Sites restarted by a timer during the last stretch, or still due to restart, finish their catch-up.
    target = rounds
    while (restarts.size > 0) await Promise.all([...restarts])
    // Nobody opens rounds any more: a site whose catch-up cannot finish must not hold the run forever.
    const catchUp = AbortSignal.timeout(options.catchUpTimeoutMs ?? 120_000)
    stretchSignal = options.signal !== undefined ? AbortSignal.any([options.signal, catchUp]) : catchUp
    for (const s of fleet.up()) runSite(s.name)
    await waitForRunning(running)
    for (const s of fleet.up()) {
      const at = await s.ops.status().then(st => st.round, () => 0)
      if (at < rounds) log.warn('sim.catch-up-incomplete', { site: s.name, round: at, rounds })
    }
  } finally {
    for (const t of timers) clearTimeout(t)
  }
}

/** Waits until every run in the map has settled, including runs added meanwhile. */
async function waitForRunning (running: Map<string, Promise<unknown>>): Promise<void> {
  while (running.size > 0) {
    const entries = [...running.entries()]
    await Promise.allSettled(entries.map(([, p]) => p))
    for (const [name, p] of entries) if (running.get(name) === p) running.delete(name)
  }
}
