import { describe, expect, it } from 'vitest'
import { createStrategy, STRATEGY_KINDS, type StrategyConfigInput } from '../coordinator/strategies/registry.ts'
import { krumSelect } from '../coordinator/strategies/krum.ts'
import type { JsonValue, SiteUpdate } from '../coordinator/strategies/types.ts'
import { createSeededRandom } from '../coordinator/components.ts'

// One config per kind; the contract below runs against every one of them.
const CONFIGS: Record<(typeof STRATEGY_KINDS)[number], StrategyConfigInput> = {
  fedavg: { kind: 'fedavg' },
  fedadam: { kind: 'fedadam', serverLr: 0.1 },
  fedyogi: { kind: 'fedyogi', serverLr: 0.1 },
  diloco: { kind: 'diloco' },
  median: { kind: 'median' },
  'trimmed-mean': { kind: 'trimmed-mean', beta: 0.2 },
  krum: { kind: 'krum', f: 1 },
  'multi-krum': { kind: 'multi-krum', f: 1 }
}

const f32 = (...xs: number[]): Float32Array => Float32Array.from(xs)
const upd = (site: string, delta: number[], samples = 10): SiteUpdate => ({ site, delta: f32(...delta), samples })

function randomUpdates (seed: number, sites: number, n: number): { updates: SiteUpdate[], global: Float32Array } {
  const rng = createSeededRandom(seed)
  const updates = Array.from({ length: sites }, (_, s) => ({
    site: `site-${s}`,
    delta: Float32Array.from({ length: n }, () => rng.normal() * 0.1),
    samples: 1 + rng.int(100)
  }))
  return { updates, global: Float32Array.from({ length: n }, () => rng.normal()) }
}

describe.each(STRATEGY_KINDS.map(k => [k, CONFIGS[k]] as const))('strategy contract: %s', (kind, config) => {
  const strategy = createStrategy(config)

  it('has its kind as its name and returns a float32 vector of the global length', () => {
    const { updates, global } = randomUpdates(1, 5, 7)
    const { next } = strategy.aggregate(updates, global, null)
    expect(strategy.name).toBe(kind)
    expect(next).toBeInstanceOf(Float32Array)
    expect(next.length).toBe(7)
  })

  it('leaves the global vector exactly unchanged when every delta is zero', () => {
    const global = f32(0.5, -1.25, 3)
    const updates = ['a', 'b', 'c', 'd', 'e'].map(s => upd(s, [0, 0, 0]))
    expect([...strategy.aggregate(updates, global, null).next]).toEqual([0.5, -1.25, 3])
  })

  it('moves against the pseudo-gradient when all sites agree', () => {
    const global = f32(1, 1, 1)
    const updates = ['a', 'b', 'c', 'd', 'e'].map(s => upd(s, [0.2, -0.3, 0.1]))
    const { next } = strategy.aggregate(updates, global, null)
    expect(next[0]).toBeLessThan(1)
    expect(next[1]).toBeGreaterThan(1)
    expect(next[2]).toBeLessThan(1)
  })

  it('does not depend on the order of the updates (bit-identical) and mutates nothing', () => {
    const { updates, global } = randomUpdates(2, 6, 33)
    const before = updates.map(u => [...u.delta])
    const globalBefore = [...global]
    const a = strategy.aggregate(updates, global, null)
    const b = strategy.aggregate([...updates].reverse(), global, null)
    expect(Buffer.from(b.next.buffer).equals(Buffer.from(a.next.buffer))).toBe(true)
    expect(JSON.stringify(b.state)).toBe(JSON.stringify(a.state))
    expect(updates.map(u => [...u.delta])).toEqual(before)
    expect([...global]).toEqual(globalBefore)
  })

  it('carries its state through JSON across rounds with the same result', () => {
    let g1 = randomUpdates(3, 5, 17).global
    let g2 = g1
    let s1: JsonValue = null
    let s2: JsonValue = null
    for (let r = 0; r < 3; r++) {
      const { updates } = randomUpdates(10 + r, 5, 17)
      const a = strategy.aggregate(updates, g1, s1)
      const b = strategy.aggregate(updates, g2, JSON.parse(JSON.stringify(s2)) as JsonValue)
      g1 = a.next; s1 = a.state
      g2 = b.next; s2 = b.state
    }
    expect([...g2]).toEqual([...g1])
  })

  it('rejects unusable updates with named errors', () => {
    const global = f32(1, 2)
    const cases: Array<[SiteUpdate[], string]> = [
      [[], 'no updates to aggregate'],
      [[upd('a', [1, 2]), upd('b', [1])], "update from 'b' has 1 values, the global vector 2"],
      [[upd('a', [1, Number.NaN]), upd('b', [1, 2])], "update from 'a' has a non-finite value at index 1"],
      [[upd('a', [1, 2], 0), upd('b', [1, 2])], "update from 'a' has samples=0; expected a positive integer"],
      [[upd('a', [1, 2]), upd('a', [1, 2])], "site 'a' sent more than one update"]
    ]
    for (const [updates, message] of cases) {
      expect(() => strategy.aggregate(updates, global, null)).toThrow(expect.objectContaining({ name: 'InvalidUpdatesError', message }))
    }
  })
})

describe('strategy configs', () => {
  it('fills in the documented defaults', () => {
    expect(createStrategy({ kind: 'diloco' }).name).toBe('diloco')
    expect(() => createStrategy({ kind: 'trimmed-mean', beta: 0.5 })).toThrow(expect.objectContaining({ name: 'StrategyConfigError', message: 'invalid strategy config: beta: expected a number < 0.5, got 0.5' }))
    expect(() => createStrategy({ kind: 'fedavg', serverLr: -1 })).toThrow(expect.objectContaining({ name: 'StrategyConfigError', message: expect.stringContaining('serverLr') }))
    expect(() => createStrategy({ kind: 'bogus' } as never)).toThrow(expect.objectContaining({ name: 'StrategyConfigError', message: expect.stringContaining('kind') }))
    expect(() => createStrategy({ kind: 'krum', f: 1.5 })).toThrow(expect.objectContaining({ name: 'StrategyConfigError', message: expect.stringContaining('f:') }))
  })

  it('refuses a malformed state read back for a stateful strategy', () => {
    for (const kind of ['fedadam', 'fedyogi', 'diloco'] as const) {
      const s = createStrategy({ kind } as StrategyConfigInput)
      expect(() => s.aggregate([upd('a', [1, 2])], f32(0, 0), { t: 1 })).toThrow(expect.objectContaining({ name: 'StrategyConfigError', message: expect.stringContaining(`${kind} state is malformed`) }))
    }
    const adam = createStrategy({ kind: 'fedadam' })
    const { state } = adam.aggregate([upd('a', [1, 2, 3])], f32(0, 0, 0), null)
    expect(() => adam.aggregate([upd('a', [1, 2])], f32(0, 0), state)).toThrow(expect.objectContaining({ name: 'StrategyConfigError', message: "strategy state 'm' holds 12 bytes, expected 8 for 2 values" }))
  })
})

describe('strategy vectors', () => {
  it('FedAvg weights by samples: next = global - weighted mean(delta)', () => {
    const { next } = createStrategy({ kind: 'fedavg' }).aggregate([upd('a', [1, 2], 1), upd('b', [4, -1], 3)], f32(10, 10), null)
    expect([...next]).toEqual([6.75, 10.25])
    const half = createStrategy({ kind: 'fedavg', serverLr: 0.5 }).aggregate([upd('a', [1, 2], 1), upd('b', [4, -1], 3)], f32(10, 10), null)
    expect([...half.next]).toEqual([8.375, 10.125])
  })

  // Reddi et al. 2021, Algorithm 2, computed here in float64 by hand.
  function adaptiveReference (yogi: boolean, gs: number[], x0: number, eta: number, b1 = 0.9, b2 = 0.99, tau = 1e-3): number[] {
    let m = 0
    let v = tau * tau
    let x = x0
    const out: number[] = []
    for (const g of gs) {
      m = b1 * m + (1 - b1) * g
      v = yogi ? v - (1 - b2) * g * g * Math.sign(v - g * g) : b2 * v + (1 - b2) * g * g
      x = x - eta * m / (Math.sqrt(v) + tau)
      out.push(x)
    }
    return out
  }

  it.each([['fedadam', false], ['fedyogi', true]] as const)('%s follows Algorithm 2 of Reddi et al. over three rounds', (kind, yogi) => {
    const s = createStrategy({ kind, serverLr: 0.1 } as StrategyConfigInput)
    const gs = [0.5, -0.2, 0.3]
    const expected = adaptiveReference(yogi, gs, 1, 0.1)
    let x = f32(1)
    let state: JsonValue = null
    gs.forEach((g, r) => {
      const out = s.aggregate([upd('a', [g])], x, state)
      x = out.next
      state = out.state
      expect(x[0]).toBeCloseTo(expected[r]!, 5)
    })
    // Round one by hand: m = 0.05, v = 0.99e-6 + 0.0025 (Adam) or 1e-6 + 0.0025 (Yogi).
    const v1 = yogi ? 1e-6 + 0.0025 : 0.99e-6 + 0.0025
    expect(expected[0]).toBeCloseTo(1 - 0.1 * 0.05 / (Math.sqrt(v1) + 1e-3), 12)
  })

  it('DiLoCo applies Nesterov momentum: -1.33 then -1.897 for a constant pseudo-gradient of 1', () => {
    const s = createStrategy({ kind: 'diloco' })
    const r1 = s.aggregate([upd('a', [1]), upd('b', [1])], f32(0), null)
    expect(r1.next[0]).toBeCloseTo(-1.33, 6)
    const r2 = s.aggregate([upd('a', [1]), upd('b', [1])], r1.next, r1.state)
    expect(r2.next[0]).toBeCloseTo(-1.33 - 0.7 * (1 + 0.9 * 1.9), 5)
  })

  it('median: middle value, or the mean of the two middle ones', () => {
    const m = createStrategy({ kind: 'median' })
    expect([...m.aggregate([upd('a', [1, 1]), upd('b', [5, 2]), upd('c', [3, 3]), upd('d', [1e6, 10])], f32(0, 0), null).next]).toEqual([-4, -2.5])
    expect([...m.aggregate([upd('a', [1]), upd('b', [5]), upd('c', [3])], f32(0), null).next]).toEqual([-3])
  })

  it('trimmed mean with beta 0.2 over five sites drops one value at each end', () => {
    const t = createStrategy({ kind: 'trimmed-mean', beta: 0.2 })
    const out = t.aggregate([upd('a', [1]), upd('b', [2]), upd('c', [3]), upd('d', [4]), upd('e', [100])], f32(0), null)
    expect([...out.next]).toEqual([-3])
  })

  // Flower's published Krum vector (src/py/flwr/server/strategy/krum_test.py):
  // three clients holding [0.2]*4, [0.7]*4, [1.0]*4, num_malicious_clients=1 -> [0.7]*4.
  it('Krum reproduces Flower\'s published vector: 0.2, 0.7, 1.0 with f=1 gives 0.7', () => {
    const models = [0.2, 0.7, 1.0].map(v => f32(v, v, v, v))
    const global = f32(0.1, 0.1, 0.1, 0.1)
    // Our updates are pseudo-gradients: delta = global - local.
    const updates = models.map((w, i) => ({ site: String(i), delta: Float32Array.from(w, (x, j) => global[j]! - x), samples: 5 }))
    expect(krumSelect(updates, 1, 1)).toEqual([1])
    const { next, state } = createStrategy({ kind: 'krum', f: 1 }).aggregate(updates, global, null)
    for (const x of next) expect(x).toBeCloseTo(0.7, 6)
    expect(state).toEqual({ selected: ['1'] })
  })

  it('Multi-Krum averages the m best scores, ties to the smaller site id', () => {
    const updates = [0, 1, 2, 4, 100].map((v, i) => upd(`s${i}`, [v]))
    // Scores with n-f-2 = 2 neighbours: 5, 2, 5, 13, huge -> s1, then s0 (tie with s2 by id), then s2.
    expect(krumSelect(updates, 1, 3)).toEqual([1, 0, 2])
    const { next, state } = createStrategy({ kind: 'multi-krum', f: 1, m: 3 }).aggregate(updates, f32(10), null)
    expect([...next]).toEqual([9])
    expect(state).toEqual({ selected: ['s0', 's1', 's2'] })
    expect(() => createStrategy({ kind: 'krum', f: 2 }).aggregate(updates.slice(0, 3), f32(0), null)).toThrow(expect.objectContaining({ name: 'InvalidUpdatesError', message: 'krum with f=2 needs at least 4 updates, got 3' }))
    expect(() => createStrategy({ kind: 'multi-krum', f: 1, m: 5 }).aggregate(updates, f32(0), null)).toThrow(expect.objectContaining({ name: 'InvalidUpdatesError', message: 'krum can average m=5 of 5 updates with f=1; expected 1 <= m <= 4' }))
  })
})
