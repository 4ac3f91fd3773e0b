import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createManualClock } from '../coordinator/components.ts'
import { computeEpsilon, rdpGaussian } from '../coordinator/dp/rdp.ts'
import { LEDGER_ORDERS, createPrivacyLedger, spentOf } from '../node/privacy/ledger.ts'
import { openSiteStore, type SiteStore } from '../node/store.ts'

describe('privacy ledger (real LevelDB in a temp folder)', () => {
  let dir: string
  let store: SiteStore
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fm-ledger-'))
    store = await openSiteStore(join(dir, 'db'))
  })
  afterEach(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const perRound = rdpGaussian(1, 1.1, LEDGER_ORDERS)
  const update = (round: number) => ({ kind: 'update' as const, label: `update round ${round}`, round, rdp: perRound })

  it('accounts Gaussian rounds in RDP: after N rounds eps equals the accountant for N steps, far below N times one round', async () => {
    const ledger = createPrivacyLedger(store, { epsilonBudget: 100, delta: 1e-5 })
    for (let r = 0; r < 20; r++) await ledger.charge(update(r))
    const spent = await ledger.spent()
    const want = computeEpsilon({ noiseMultiplier: 1.1, sampleRate: 1, steps: 20, delta: 1e-5 }).epsilon
    expect(spent.epsilon).toBeCloseTo(want, 9)
    expect(spent.delta).toBe(1e-5)
    const one = computeEpsilon({ noiseMultiplier: 1.1, sampleRate: 1, steps: 1, delta: 1e-5 }).epsilon
    expect(spent.epsilon).toBeLessThan(20 * one / 2)
    expect((await ledger.remaining()).epsilon).toBeCloseTo(100 - want, 9)
  })

  it('adds explicit (eps, delta) releases by basic composition and converts the RDP part at the delta left', async () => {
    const clock = createManualClock(1000)
    const ledger = createPrivacyLedger(store, { epsilonBudget: 50, delta: 1e-5 }, { clock })
    await ledger.charge({ kind: 'synthetic', label: 'synthetic claims.csv', epsilon: 1, delta: 4e-6 })
    expect(await ledger.spent()).toEqual({ epsilon: 1, delta: 4e-6 })
    await ledger.charge(update(0))
    const rdpEps = computeEpsilon({ noiseMultiplier: 1.1, sampleRate: 1, steps: 1, delta: 6e-6 }).epsilon
    expect((await ledger.spent()).epsilon).toBeCloseTo(1 + rdpEps, 9)
    // zCDP joins the curve as rho * alpha.
    await ledger.charge({ kind: 'expert', label: 'expert e1', rho: 0.01 })
    const entries = await ledger.entries()
    expect(entries.map(e => [e.seq, e.kind, e.accounting, e.at])).toEqual([[1, 'synthetic', 'explicit', 1000], [2, 'update', 'rdp', 1000], [3, 'expert', 'rdp', 1000]])
  })

  it('records routing releases under their own kind; entries written before that kind existed still parse', async () => {
    const clock = createManualClock(2000)
    // An entry exactly as the previous build wrote it: routing statistics charged as kind 'expert'.
    const old = { seq: 1, kind: 'expert', label: 'fed/release-1 global moments', accounting: 'rdp', spentAfter: { epsilon: 0.5, delta: 1e-5 }, at: 1000 }
    const state = { version: 1 as const, epsilonBudget: 10, delta: 1e-5, rdp: LEDGER_ORDERS.map(a => 0.001 * a), explicitEpsilon: 0, explicitDelta: 0, releases: 1 }
    await store.batch([
      { sublevel: 'privacy', type: 'put', key: 'ledger/entry/000000000001', value: old },
      { sublevel: 'privacy', type: 'put', key: 'ledger/state', value: state }
    ])
    const ledger = createPrivacyLedger(store, { epsilonBudget: 10, delta: 1e-5 }, { clock })
    const entry = await ledger.charge({ kind: 'routing', label: 'fed/release-2 components', rho: 0.002 })
    expect([entry.seq, entry.kind, entry.label, entry.accounting, entry.at]).toEqual([2, 'routing', 'fed/release-2 components', 'rdp', 2000])
    // Both rho charges (0.001 from the old state, 0.002 now) sit on one RDP curve: rho 0.003 in all.
    expect((await ledger.spent()).epsilon).toBeCloseTo(spentOf({ ...state, rdp: LEDGER_ORDERS.map(a => 0.003 * a) }).epsilon, 12)
    expect((await ledger.entries()).map(e => [e.seq, e.kind, e.label])).toEqual([[1, 'expert', 'fed/release-1 global moments'], [2, 'routing', 'fed/release-2 components']])
    await expect(ledger.canCharge({ kind: 'routings' as 'routing', label: 'x', rho: 0.1 })).rejects.toMatchObject({
      name: 'InvalidArgumentError',
      message: 'invalid privacy charge: kind: expected one of "update", "expert", "synthetic", "routing", got "routings"'
    })
    await expect(ledger.charge({ kind: 'routing', label: 'too much', rho: 5 })).rejects.toMatchObject({
      name: 'PrivacyBudgetExceededError',
      message: expect.stringMatching(/^release 'too much' \(routing\) refused: eps would reach/)
    })
  })

  it('refuses a release that would exceed the budget with a named error and records nothing, also across reopen', async () => {
    const ledger = createPrivacyLedger(store, { epsilonBudget: 12, delta: 1e-5 })
    let charged = 0
    for (;;) {
      const check = await ledger.canCharge(update(charged))
      if (!check.ok) break
      await ledger.charge(update(charged))
      charged++
    }
    expect(charged).toBeGreaterThan(2)
    const before = await ledger.status()
    await expect(ledger.charge(update(charged))).rejects.toMatchObject({
      name: 'PrivacyBudgetExceededError',
      message: expect.stringMatching(/^release 'update round \d+' \(update\) refused: eps would reach [\d.]+ of the budget 12 \(delta 0\.00001\); nothing was recorded or sent$/)
    })
    expect(await ledger.status()).toEqual(before)
    expect((await ledger.entries()).length).toBe(charged)
    await store.close()
    store = await openSiteStore(join(dir, 'db'))
    const reopened = createPrivacyLedger(store, { epsilonBudget: 12, delta: 1e-5 })
    expect(await reopened.status()).toEqual(before)
    expect((await reopened.canCharge(update(charged))).ok).toBe(false)
  })

  it('lets exactly one of two concurrent charges through when only one fits', async () => {
    const ledger = createPrivacyLedger(store, { epsilonBudget: 1.5, delta: 1e-5 })
    const results = await Promise.allSettled([
      ledger.charge({ kind: 'synthetic', label: 'a', epsilon: 1, delta: 0 }),
      ledger.charge({ kind: 'synthetic', label: 'b', epsilon: 1, delta: 0 })
    ])
    expect(results.map(r => r.status).sort()).toEqual(['fulfilled', 'rejected'])
    expect((await ledger.spent()).epsilon).toBe(1)
  })

  it('canCharge has no side effects; a budget cannot be changed by reopening; bad charges are named errors', async () => {
    const ledger = createPrivacyLedger(store, { epsilonBudget: 20, delta: 1e-5 })
    expect((await ledger.canCharge(update(0))).ok).toBe(true)
    expect((await ledger.status()).releases).toBe(0)
    await ledger.charge({ kind: 'synthetic', label: 'x', epsilon: 0.5, delta: 0 })
    await expect(createPrivacyLedger(store, { epsilonBudget: 200, delta: 1e-5 }).status()).rejects.toMatchObject({ name: 'ConfigError', message: expect.stringContaining('a budget is not raised by restarting') })
    await expect(ledger.charge({ kind: 'update', label: 'nothing' })).rejects.toMatchObject({ name: 'InvalidArgumentError', message: 'invalid privacy charge: (root): a charge needs rdp, rho or epsilon, got an object' })
    expect(() => createPrivacyLedger(store, { epsilonBudget: 0, delta: 1e-5 })).toThrow(expect.objectContaining({ name: 'ConfigError' }))
  })
})
