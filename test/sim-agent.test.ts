/**
 * The process agent's lifetimes: no site's child process outlives the run.
 * An abort of the run's signal kills every child; a simulator that exits
 * without stopping its fleet takes its children with it (its exit handler
 * kills them, and a child whose channel closes exits). Each child's peak RSS
 * is measured when it ends.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import { createProcessFleet } from '../sim/agent/process.ts'
import { waitFor } from '../sim/moe-helpers.ts'
import { fleetInitFor } from './fixtures/sim/agents.ts'

const alive = (pid: number): boolean => {
  try { process.kill(pid, 0); return true } catch { return false }
}

describe('site agents in child processes', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'fm-sim-agent-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('runs each site in its own process, measures a stopped one, and kills the rest on abort', async () => {
    const ac = new AbortController()
    const fleet = await createProcessFleet(await fleetInitFor(join(dir, 'abort')), { logger: createSilentLogger(), signal: ac.signal })
    try {
      await fleet.start(() => true)
      const pids = fleet.agents.flatMap(a => a.pids())
      expect(pids).toHaveLength(2)
      expect(new Set([...pids, process.pid]).size).toBe(3)
      for (const pid of pids) expect(alive(pid)).toBe(true)
      const status = await fleet.byName('a').ops.status()
      expect(status.round).toBe(0)
      // A site that leaves stops cleanly, and its peak RSS is read as it goes.
      await fleet.leave('b')
      expect(fleet.byName('b').state).toBe('left')
      expect(fleet.byName('b').exits()).toEqual([{ pid: pids[1], signal: null, code: 0 }])
      expect(fleet.byName('b').peakRssBytes()).toBeGreaterThan(20e6)
      expect(fleet.byName('a').peakRssBytes()).toBeNull()
      ac.abort()
      await waitFor(() => !alive(pids[0]!), 10_000, 'the aborted run\'s child to die')
      expect(fleet.byName('a').exits()).toEqual([{ pid: pids[0], signal: 'SIGKILL', code: null }])
      await expect(fleet.byName('a').ops.status()).rejects.toThrow("site 'a' is not up")
    } finally {
      await fleet.stop()
    }
  }, 60_000)

  it('leaves no child behind when the simulator exits without stopping its fleet', async () => {
    const script = join(import.meta.dirname, 'fixtures', 'sim', 'parent-exits.ts')
    const { code, stdout } = await new Promise<{ code: number | null, stdout: string }>(resolve => {
      execFile(process.execPath, ['--import', 'tsx', script, join(dir, 'parent-exits')], { timeout: 60_000 }, (err, out) => { resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : null), stdout: out }) })
    })
    expect(code).toBe(3)
    const pids = JSON.parse(stdout.trim()) as number[]
    expect(pids).toHaveLength(2)
    await waitFor(() => pids.every(p => !alive(p)), 10_000, 'the exited simulator\'s children to die')
  }, 60_000)
})
