/**
 * `forgemesh sim` end to end: the real CLI in a child process, on a small
 * three-site topology (test/fixtures/sim/small.json: 6000 training rows,
 * 1000 test rows, 3 rounds). Two runs with one seed must write the same
 * report, timings aside; the MoE must beat local-only and dense FedAvg.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCompressor } from '../coordinator/compression/combined.ts'
import { recipeInitialParams } from '../node/federation/recipe.ts'
import { denseSpecFor } from '../node/model/params.ts'
import { flattenTensors } from '../protocols/tensors.ts'
import { parseReport, withoutTimings, type Report } from '../sim/report/schema.ts'
import { specFor } from '../sim/site-settings.ts'
import { loadTopology } from '../sim/topology.ts'

const exec = promisify(execFile)
const root = join(import.meta.dirname, '..')
const cli = join(root, 'bin', 'forgemesh.js')
const topology = join(root, 'test', 'fixtures', 'sim', 'small.json')

async function sim (...args: string[]): Promise<{ stdout: string, stderr: string }> {
  return await exec(process.execPath, [cli, 'sim', topology, ...args], { timeout: 120_000, cwd: root })
}

describe('forgemesh sim (CLI)', () => {
  let dir: string
  let first: { stdout: string, stderr: string }
  let second: { stdout: string, stderr: string }
  let a: Report
  let b: Report

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fm-sim-cli-'))
    // One after the other: each run already keeps both cores busy (sites + baselines' worker).
    first = await sim('--out', join(dir, 'a'), '--json')
    second = await sim('--out', join(dir, 'b'))
    a = parseReport(JSON.parse(await readFile(join(dir, 'a', 'report.json'), 'utf8')), 'run a')
    b = parseReport(JSON.parse(await readFile(join(dir, 'b', 'report.json'), 'utf8')), 'run b')
  }, 150_000)
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('writes the same report twice from one seed, timings and wire bytes aside', () => {
    expect(a.topology).toEqual({ name: 'small', seed: 7, sites: ['alpha', 'bravo', 'charlie'], transport: 'tcp', execution: 'process' })
    expect(a.methods.moe.rounds.map(r => r.round)).toEqual([0, 1, 2, 3])
    expect(withoutTimings(a)).toEqual(withoutTimings(b))
    // The timing fields were measured, not left empty.
    expect(a.run.peakRssBytes).toBeGreaterThan(50e6)
    // Each site ran in a child process of its own: its peak RSS is measured, not a share of this one's.
    expect(a.sites.map(s => s.peakRssSource)).toEqual(['measured', 'measured', 'measured'])
    for (const s of a.sites) expect(s.peakRssBytes).toBeGreaterThan(50e6)
    expect(new Set(a.sites.map(s => s.peakRssBytes)).size).toBeGreaterThan(1)
  })

  it('puts the MoE ahead of local-only and dense FedAvg', () => {
    const m = a.summary.methods
    // Measured: MoE 76.1 %, dense FedAvg 64.1 %, local-only 27.6 % (mean), centralized 83.1 %.
    expect(m.moe.accuracy).toBeGreaterThan(m.fedavgDense.accuracy + 0.05)
    expect(m.moe.accuracy).toBeGreaterThan(m.localOnly.accuracy + 0.3)
    expect(m.moe.rounds).toBe(3)
  })

  it('counts dense FedAvg\'s bytes as the mesh moves the MoE\'s: (N − 1) × (update + float32 aggregate) a round', async () => {
    const topo = await loadTopology(topology)
    const params = flattenTensors(recipeInitialParams(denseSpecFor(specFor(topo)))).length
    const update = createCompressor(topo.federation.compression, { length: params }).compress(new Float32Array(params)).wireBytes
    const perRound = (topo.sites.length - 1) * (update + 4 * params)
    let previous = 0
    for (const r of a.methods.fedavgDense.rounds) {
      expect(r.bytesSent).toBe(perRound * (r.round - previous))
      previous = r.round
    }
    expect(a.summary.methods.fedavgDense.bytesSent).toBe(perRound * 3)
  })

  it('sends release 1 to one aggregator, not to every member', () => {
    // Release 1 is 4 * (1 + 784 + 784*785/2) bytes. All-to-all, 3 sites moved 6 of them in setup;
    // summed at one member, 2 go up and the sum (with the projection) comes down twice.
    const release1 = 4 * (1 + 784 + 784 * 785 / 2)
    const setup = a.methods.moe.rounds[0]!.bytesSent
    expect(setup).toBeGreaterThan(4 * release1)
    expect(setup).toBeLessThan(5 * release1)
  })

  it('prints --json as one object and the summary table otherwise; writes report.html', async () => {
    const out = JSON.parse(first.stdout.trim()) as { ok: boolean, topology: string, report: string, html: string, summary: Report['summary']['methods'], assembledAt: string }
    expect(out.ok).toBe(true)
    expect(out.topology).toBe('small')
    expect(out.report).toBe(join(dir, 'a', 'report.json'))
    expect(out.summary).toEqual(a.summary.methods)
    expect(['alpha', 'bravo', 'charlie']).toContain(out.assembledAt)
    expect(first.stdout.trim().split('\n')).toHaveLength(1)

    const lines = second.stdout.split('\n')
    expect(lines).toContain('method                      accuracy   bytes sent   rounds   wall time')
    const moeLine = lines.find(l => l.startsWith('forgemesh MoE'))
    expect(moeLine).toContain(`${(b.summary.methods.moe.accuracy * 100).toFixed(2)}%`)
    expect(second.stdout).toContain('The MoE was assembled at ')
    expect(second.stdout).toMatch(/^peak RSS per site \d+ MB–\d+ MB \(measured, one process per site; sum \d+ MB\); simulator process \d+ MB$/m)
    expect(second.stderr).toContain('forgemesh sim: small — 3 sites, 3 rounds')

    const html = await readFile(join(dir, 'b', 'report.html'), 'utf8')
    expect((await stat(join(dir, 'b', 'report.html'))).size).toBeGreaterThan(1000)
    expect(html).toContain('data-plot="accuracy"')
  })
})
