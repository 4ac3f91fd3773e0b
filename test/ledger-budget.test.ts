import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createManualClock } from '../coordinator/components.ts'
import { computeEpsilon, rdpGaussian } from '../coordinator/dp/rdp.ts'
import { LEDGER_ORDERS, createPrivacyLedger } from '../node/privacy/ledger.ts'
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

  it('canCharge has no side effects; a budget cannot be changed by reopening; bad charges are zod errors', async () => {
    const ledger = createPrivacyLedger(store, { epsilonBudget: 20, delta: 1e-5 })
    expect((await ledger.canCharge(update(0))).ok).toBe(true)
    expect((await ledger.status()).releases).toBe(0)
    await ledger.charge({ kind: 'synthetic', label: 'x', epsilon: 0.5, delta: 0 })
    await expect(createPrivacyLedger(store, { epsilonBudget: 200, delta: 1e-5 }).status()).rejects.toMatchObject({ name: 'ConfigError', message: expect.stringContaining('a budget is not raised by restarting') })
    await expect(ledger.charge({ kind: 'update', label: 'nothing' })).rejects.toMatchObject({ name: 'ZodError' })
    expect(() => createPrivacyLedger(store, { epsilonBudget: 0, delta: 1e-5 })).toThrow(expect.objectContaining({ name: 'ConfigError' }))
  })
})
