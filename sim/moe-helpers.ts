/**
 * Small pieces of the networked MoE run (sim/moe-method.ts) that need no
 * closure: comparing projections, picking a slot's parameters, the report's
 * per-site events, and waiting on a condition with a deadline.
 */
import type { Projection } from '../coordinator/routing/projection.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import { TopologyError } from './errors.ts'
import { sleep } from './sleep.ts'
import type { Action } from './schedule.ts'

export interface SiteEvent { round: number, kind: 'crash' | 'restart' | 'join' | 'leave' | 'partition' | 'heal' | 'slow' }

export function sameProjection (a: Projection, b: Projection): boolean {
  const eq = (x: Float64Array, y: Float64Array): boolean => x.length === y.length && x.every((v, i) => v === y[i])
  return a.inputDim === b.inputDim && a.dim === b.dim && a.clipNorm === b.clipNorm && eq(a.mean, b.mean) && eq(a.basis, b.basis)
}

export function pick (params: TensorMap, slot: number): TensorMap {
  return new Map([...params].filter(([n]) => n.startsWith(`expert.${slot}.`)))
}

export function latestBefore (byRound: Map<number, TensorMap>, round: number): TensorMap | undefined {
  let best = -1
  for (const r of byRound.keys()) if (r <= round && r > best) best = r
  return best === -1 ? undefined : byRound.get(best)
}

export function recordAction (events: Map<string, SiteEvent[]>, action: Action, round: number): void {
  const add = (site: string, kind: SiteEvent['kind']): void => { events.get(site)?.push({ round, kind }) }
  switch (action.kind) {
    case 'crash': case 'restart': case 'join': case 'leave': case 'slow': add(action.site, action.kind); return
    case 'partition': for (const g of action.groups) for (const s of g) add(s, 'partition'); return
    case 'heal': for (const list of events.values()) if (list.at(-1)?.kind === 'partition') list.push({ round, kind: 'heal' }); return
  }
}

export async function waitFor (check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, pollMs = 50): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await check())) {
    if (performance.now() > deadline) throw new TopologyError(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(pollMs)
  }
}
