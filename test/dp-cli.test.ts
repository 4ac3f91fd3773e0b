/** The real `forgemesh privacy` command in a child process. */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createPrivacyLedger } from '../node/privacy/ledger.ts'
import { openSiteStore } from '../node/store.ts'
import { forgemesh } from './support/cli.ts'

describe('forgemesh privacy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fm-privacy-cli-'))
  afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

  it('epsilon --json reproduces the Opacus reference (z 1.5, q 0.04, 2250 steps, delta 1e-5 -> 7.32911117143)', async () => {
    const r = await forgemesh('privacy', 'epsilon', '--noise-multiplier', '1.5', '--sample-rate', '0.04', '--steps', '2250', '--delta', '1e-5', '--json')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { ok: boolean, epsilon: number, conversion: string }
    expect(out.ok).toBe(true)
    expect(Math.abs(out.epsilon - 7.32911117143)).toBeLessThan(5e-8)
    expect(out.conversion).toBe('balle2020')
  })

  it('epsilon prints eps and names the conversion; bad input exits 2 with the reason', async () => {
    const r = await forgemesh('privacy', 'epsilon', '--noise-multiplier=1.1', '--sample-rate=0.01', '--steps=1000', '--delta=1e-5')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^eps = \d+\.\d+ at delta = 0\.00001 \(optimal RDP order [\d.]+\)\n/)
    expect(r.stdout).toContain('Balle et al. 2020')
    const missing = await forgemesh('privacy', 'epsilon', '--noise-multiplier', '1', '--json')
    expect(missing.code).toBe(2)
    expect(JSON.parse(missing.stdout.trim())).toEqual({ ok: false, error: { name: 'UsageError', message: '--sample-rate is required' } })
    const bad = await forgemesh('privacy', 'epsilon', '--noise-multiplier', '1', '--sample-rate', '2', '--steps', '10', '--delta', '1e-5')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('sample rate must be in [0, 1], got 2')
  })

  it('status shows what a site has spent and has left', async () => {
    const site = join(dir, 'site')
    const store = await openSiteStore(site)
    await createPrivacyLedger(store, { epsilonBudget: 5, delta: 1e-5 }).charge({ kind: 'synthetic', label: 'synthetic t.csv', epsilon: 1.25, delta: 1e-6 })
    await store.close()
    const r = await forgemesh('privacy', 'status', '--site', site, '--json')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout.trim())).toEqual({ ok: true, ledger: { epsilonBudget: 5, delta: 1e-5, spent: { epsilon: 1.25, delta: 1e-6 }, remaining: { epsilon: 3.75, delta: 9e-6 }, releases: 1 } })
  })
})
