import { describe, expect, it } from 'vitest'
import { createManualClock, createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { createCoordinatorTracker, electCoordinator } from '../coordinator/election.ts'
import { createMembershipView } from '../coordinator/membership.ts'
import { createRoundMachine, type RoundEvent } from '../coordinator/round.ts'
import { createStrategy } from '../coordinator/strategies/registry.ts'

describe('membership view from heartbeats', () => {
  it('marks a member gone once it is silent past the timeout, and back when heard again', () => {
    const clock = createManualClock(1000)
    const view = createMembershipView({ heartbeatTimeoutMs: 500 }, { clock })
    view.heartbeat('b')
    view.heartbeat('a')
    clock.advance(300)
    view.heartbeat('a')
    expect(view.live()).toEqual(['a', 'b'])
    clock.advance(201) // b last seen 501 ms ago
    expect(view.live()).toEqual(['a'])
    expect(view.members()).toEqual([{ peer: 'a', lastSeen: 1300, live: true }, { peer: 'b', lastSeen: 1000, live: false }])
    view.heartbeat('b')
    expect(view.isLive('b')).toBe(true)
    view.remove('a')
    expect(view.live()).toEqual(['b'])
    expect(() => createMembershipView({ heartbeatTimeoutMs: 0 }, { clock })).toThrow(expect.objectContaining({ name: 'InvalidArgumentError' }))
  })
})

describe('coordinator election', () => {
  it('picks the highest priority, then the smallest peer id, among live members only', () => {
    const clock = createManualClock(0)
    const view = createMembershipView({ heartbeatTimeoutMs: 100 }, { clock })
    for (const p of ['peer-c', 'peer-a', 'peer-b']) view.heartbeat(p)
    expect(electCoordinator(view)).toBe('peer-a')
    expect(electCoordinator(view, { 'peer-c': 2, 'peer-b': 2 })).toBe('peer-b')
    expect(electCoordinator(view, new Map([['peer-c', 5]]))).toBe('peer-c')
    clock.advance(101)
    expect(electCoordinator(view)).toBeUndefined()
  })

  it('elects a new coordinator when the current one goes silent, with a new term', () => {
    const clock = createManualClock(0)
    const view = createMembershipView({ heartbeatTimeoutMs: 100 }, { clock })
    const tracker = createCoordinatorTracker(view)
    const beat = (...peers: string[]): void => { for (const p of peers) view.heartbeat(p) }
    beat('a', 'b', 'c')
    expect(tracker.observe()).toEqual({ coordinator: 'a', term: 1, changed: true })
    clock.advance(60)
    beat('b', 'c')
    expect(tracker.observe()).toEqual({ coordinator: 'a', term: 1, changed: false })
    clock.advance(60) // a silent for 120 ms
    beat('b', 'c')
    expect(tracker.observe()).toEqual({ coordinator: 'b', term: 2, changed: true })
    beat('a') // a comes back: it is elected again, in a later term
    expect(tracker.observe()).toEqual({ coordinator: 'a', term: 3, changed: true })
  })
})

function setup (overrides: Partial<Parameters<typeof createRoundMachine>[0]> = {}) {
  const clock = createManualClock(10_000)
  const machine = createRoundMachine({ specHash: 'spec-1', vectorLength: 2, roundTimeoutMs: 1000, quorumFraction: 0.5, ...overrides }, { clock, random: createSeededRandom('fed'), logger: createSilentLogger() })
  const events: RoundEvent[] = []
  machine.subscribe(e => { events.push(e) })
  return { clock, machine, events }
}
const d = (a: number, b: number): Float32Array => Float32Array.from([a, b])

describe('round state machine', () => {
  it('open -> collect -> all in -> aggregate -> commit -> announce, then the next round', () => {
    const { machine, events } = setup()
    const open = machine.open(['s2', 's1', 's3'])
    expect(open).toMatchObject({ type: 'open', round: 1, attempt: 1, participants: ['s1', 's2', 's3'], deadline: 11_000, specHash: 'spec-1', required: 2 })
    expect(open.seed).toBe(createSeededRandom('fed').fork('round/1').int(2 ** 32))
    expect(machine.receiveUpdate({ round: 1, site: 's1', nonce: 'n1', delta: d(1, 1), samples: 1 })).toEqual({ status: 'accepted', received: 1, required: 2 })
    expect(machine.receiveUpdate({ round: 1, site: 's2', nonce: 'n2', delta: d(3, 3), samples: 1, wireBytes: 2 })).toEqual({ status: 'accepted', received: 2, required: 2 })
    expect(() => machine.aggregate({ global: d(0, 0), strategy: createStrategy({ kind: 'fedavg' }), state: null })).toThrow(expect.objectContaining({ name: 'RoundPhaseError', message: 'round 1 is still collecting (2 of 3 updates, deadline 11000)' }))
    machine.receiveUpdate({ round: 1, site: 's3', nonce: 'n3', delta: d(5, 5), samples: 2 })
    expect(events.map(e => e.type)).toEqual(['open', 'accepted', 'accepted', 'accepted', 'closed'])
    expect(events.at(-1)).toEqual({ type: 'closed', round: 1, attempt: 1, reason: 'all-in', contributors: ['s1', 's2', 's3'], dropouts: [] })
    const outcome = machine.aggregate({ global: d(10, 10), strategy: createStrategy({ kind: 'fedavg' }), state: null })
    expect([...outcome.next]).toEqual([6.5, 6.5]) // (1 + 3 + 2*5) / 4 = 3.5
    expect(outcome.updates).toEqual([{ site: 's1', nonce: 'n1', samples: 1 }, { site: 's2', nonce: 'n2', samples: 1 }, { site: 's3', nonce: 'n3', samples: 2 }])
    expect(outcome.bytes.wireBytes).toBe(8 + 2 + 8)
    const announce = machine.commit({ aggregateHash: 'h1' })
    expect(announce).toEqual({ type: 'announce', round: 1, aggregateHash: 'h1', participants: ['s1', 's2', 's3'], dropouts: [], specHash: 'spec-1', seed: open.seed, strategy: 'fedavg' })
    expect(machine.status()).toMatchObject({ phase: 'idle', round: 2 })
    expect(machine.open(['s1']).round).toBe(2)
  })

  it('never counts an update twice: same key is a duplicate, same site with another nonce is rejected', () => {
    const { machine } = setup()
    machine.open(['a', 'b', 'c'])
    expect(machine.receiveUpdate({ round: 1, site: 'a', nonce: 'x', delta: d(1, 1), samples: 1 }).status).toBe('accepted')
    expect(machine.receiveUpdate({ round: 1, site: 'a', nonce: 'x', delta: d(1, 1), samples: 1 })).toEqual({ status: 'duplicate' })
    expect(machine.receiveUpdate({ round: 1, site: 'a', nonce: 'y', delta: d(9, 9), samples: 1 })).toEqual({ status: 'rejected', reason: 'already-submitted', message: "'a' already contributed to round 1 with another nonce" })
    expect(machine.status().received).toEqual(['a'])
  })

  it('rejects stale and future rounds, strangers and malformed updates with a reason', () => {
    const { machine } = setup({ nextRound: 5 })
    const reasons = (): string[] => [
      machine.receiveUpdate({ round: 5, site: 'a', nonce: 'n', delta: d(1, 1), samples: 1 }),
      machine.receiveUpdate({ round: 4, site: 'a', nonce: 'n', delta: d(1, 1), samples: 1 }),
      machine.receiveUpdate({ round: 6, site: 'a', nonce: 'n', delta: d(1, 1), samples: 1 }),
      machine.receiveUpdate({ round: 5, site: 'zz', nonce: 'n', delta: d(1, 1), samples: 1 }),
      machine.receiveUpdate({ round: 5, site: 'a', nonce: 'n', delta: Float32Array.from([1]), samples: 1 }),
      machine.receiveUpdate({ round: 5, site: 'a', nonce: 'n', delta: d(1, Number.POSITIVE_INFINITY), samples: 1 }),
      machine.receiveUpdate({ round: 5, site: 'a', nonce: 'n', delta: d(1, 1), samples: 0 }),
      machine.receiveUpdate({ round: 5, site: 'a', nonce: '', delta: d(1, 1), samples: 1 })
    ].map(r => r.status === 'rejected' ? r.reason : r.status)
    expect(reasons()[0]).toBe('not-collecting')
    machine.open(['a', 'b'])
    expect(reasons()).toEqual(['accepted', 'stale-round', 'future-round', 'not-a-participant', 'duplicate', 'duplicate', 'duplicate', 'bad-nonce'])
    const fresh = setup().machine
    fresh.open(['a'])
    const r = fresh.receiveUpdate({ round: 1, site: 'a', nonce: 'n', delta: Float32Array.from([1]), samples: 1 })
    expect(r).toEqual({ status: 'rejected', reason: 'wrong-length', message: "update from 'a' has 1 values, expected 2" })
    expect(fresh.receiveUpdate({ round: 1, site: 'a', nonce: 'n', delta: d(Number.NaN, 1), samples: 1 })).toMatchObject({ reason: 'non-finite' })
  })

  it('at the deadline with quorum: stragglers are dropouts and a late update is refused', () => {
    const { clock, machine, events } = setup()
    machine.open(['a', 'b', 'c', 'd'])
    machine.receiveUpdate({ round: 1, site: 'a', nonce: 'n', delta: d(1, 1), samples: 1 })
    machine.receiveUpdate({ round: 1, site: 'b', nonce: 'n', delta: d(3, 3), samples: 1 })
    clock.advance(1000)
    expect(machine.tick()).toEqual([]) // exactly at the deadline is still in time
    clock.advance(1)
    expect(machine.tick()).toEqual([{ type: 'closed', round: 1, attempt: 1, reason: 'deadline', contributors: ['a', 'b'], dropouts: ['c', 'd'] }])
    expect(machine.receiveUpdate({ round: 1, site: 'c', nonce: 'n', delta: d(1, 1), samples: 1 })).toMatchObject({ status: 'rejected', reason: 'past-deadline' })
    const outcome = machine.aggregate({ global: d(0, 0), strategy: createStrategy({ kind: 'fedavg' }), state: null })
    expect(outcome).toMatchObject({ participants: ['a', 'b'], dropouts: ['c', 'd'] })
    expect(events.filter(e => e.type === 'closed')).toHaveLength(1)
  })

  it('a round that misses quorum reports QuorumNotReachedError, commits nothing and is reopened', () => {
    const { clock, machine, events } = setup({ quorumFraction: 0.75 })
    const first = machine.open(['a', 'b', 'c', 'd'])
    machine.receiveUpdate({ round: 1, site: 'a', nonce: 'n', delta: d(1, 1), samples: 1 })
    clock.advance(1001)
    const out = machine.tick({ participants: ['a', 'b', 'c'] })
    expect(out[0]).toEqual({ type: 'quorum-missed', round: 1, attempt: 1, received: 1, required: 3, error: { name: 'QuorumNotReachedError', message: 'round 1 attempt 1 closed at its deadline with 1 of 3 required updates; nothing committed, round reopened' } })
    expect(out[1]).toMatchObject({ type: 'open', round: 1, attempt: 2, participants: ['a', 'b', 'c'], deadline: 12_001, seed: first.seed, required: 3 })
    expect(events.some(e => e.type === 'announce')).toBe(false)
    // The failed attempt's update was dropped: the same update counts once in the new attempt.
    expect(machine.status().received).toEqual([])
    expect(machine.receiveUpdate({ round: 1, site: 'a', nonce: 'n', delta: d(1, 1), samples: 1 }).status).toBe('accepted')
    expect(() => machine.commit({ aggregateHash: 'x' })).toThrow(expect.objectContaining({ name: 'RoundPhaseError', message: 'cannot commit round 1: it is collecting, not aggregated' }))
  })

  it('abort reopens the round; advanceTo moves an idle machine past rounds committed elsewhere', () => {
    const { machine } = setup()
    machine.open(['a', 'b'])
    machine.receiveUpdate({ round: 1, site: 'a', nonce: 'n', delta: d(1, 1), samples: 1 })
    const out = machine.abort('coordinator changed')
    expect(out.map(e => e.type)).toEqual(['aborted', 'open'])
    expect(machine.status()).toMatchObject({ phase: 'collecting', round: 1, attempt: 2, received: [] })
    expect(() => machine.advanceTo(3)).toThrow(expect.objectContaining({ name: 'RoundPhaseError' }))
    const idle = setup().machine
    idle.advanceTo(7)
    expect(idle.open(['a']).round).toBe(7)
    expect(() => createRoundMachine({ specHash: '', vectorLength: 2, roundTimeoutMs: 1 }, { clock: createManualClock(), random: createSeededRandom(1), logger: createSilentLogger() })).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('specHash') }))
  })
})
