/**
 * `forgemesh export` and `forgemesh serve` as real child processes: export
 * from artifact files (bad ones left out, named) and from a site's registry
 * (withdrawn experts left out); the export loads back bit for bit; serve
 * answers with attribution, honours exclude and refuses bad bodies with 400.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createManualClock, createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { buildArtifact, type VerifiedArtifact } from '../node/experts/artifact.ts'
import { assembleMoe } from '../node/experts/assemble.ts'
import { loadExport, sharedToSafetensors } from '../node/experts/export.ts'
import { createExpertRegistry } from '../node/experts/registry.ts'
import { signRevocation } from '../node/experts/revocation.ts'
import type { SiteIdentity } from '../node/identity.ts'
import { selectBackend } from '../node/model/backend.ts'
import { initParams } from '../node/model/params.ts'
import { parseMoeSpec } from '../node/model/spec.ts'
import { openSiteStore } from '../node/store.ts'
import { identities, tempDir } from './mesh-helpers.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const cli = join(root, 'bin', 'forgemesh.js')
const spec = parseMoeSpec({ inputDim: 8, width: 6, expertHidden: 5, experts: 3, topK: 2, classes: 4, seed: 3, routerInitScale: 4 })
const params = initParams(spec)
const clock = createManualClock(1_700_000_000_000)

function forgemesh (args: string[]): { code: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

function bytesOf (a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength)
}

describe('forgemesh export and serve (real CLI)', () => {
  const dir = tempDir('fm-experts-cli-')
  let sites: SiteIdentity[]
  let a: VerifiedArtifact, b: VerifiedArtifact, c: VerifiedArtifact
  const out = join(dir.path, 'export')
  const x = Float32Array.from({ length: 5 * spec.inputDim }, (_, i) => createSeededRandom(i).normal())

  beforeAll(async () => {
    await selectBackend('cpu', createSilentLogger())
    sites = await identities(dir.path, 4)
    const build = async (i: number, id: string): Promise<VerifiedArtifact> =>
      await buildArtifact({ identity: sites[i]!, spec, expertId: id, slot: i, version: 1, sampleCount: 1000 + i, metrics: { accuracy: 0.98 }, params }, { clock })
    ;[a, b, c] = [await build(0, 'a'), await build(1, 'b'), await build(2, 'c')]
    const stray = await buildArtifact({ identity: sites[3]!, spec, expertId: 'stray', slot: 2, version: 1, sampleCount: 1, params }, { clock })
    const tampered = c.bytes.slice()
    tampered[tampered.length - 1]! ^= 0x10
    for (const [name, bytes] of [['a', a.bytes], ['b', b.bytes], ['stray', stray.bytes], ['tampered', tampered]] as const) writeFileSync(join(dir.path, `${name}.fmx`), bytes)
    writeFileSync(join(dir.path, 'members.json'), JSON.stringify(sites.slice(0, 3).map(s => s.peerId)))
    writeFileSync(join(dir.path, 'shared.safetensors'), sharedToSafetensors(spec, params))
  })
  afterAll(() => { dir.remove() })

  it('exports from artifact files, leaves out the bad ones by name, and loads back bit for bit', async () => {
    const files = ['a', 'b', 'stray', 'tampered'].map(n => join(dir.path, `${n}.fmx`)).join(',')
    const r = forgemesh(['export', '--shared', join(dir.path, 'shared.safetensors'), '--artifacts', files, '--members', join(dir.path, 'members.json'), '--out', out, '--json'])
    expect(r.stderr).toContain('NotAMemberError')
    expect(r.code).toBe(0)
    const res = JSON.parse(r.stdout.trim().split('\n').at(-1)!)
    expect(res.experts).toEqual([{ slot: 0, id: 'a', owner: sites[0]!.peerId, artifact: a.hash }, { slot: 1, id: 'b', owner: sites[1]!.peerId, artifact: b.hash }])
    expect(res.rejected.map((x: { error: string }) => x.error)).toEqual(['NotAMemberError', 'ArtifactHashMismatchError'])
    expect(res.masked).toEqual([{ slot: 2, reason: 'absent' }])

    const here = assembleMoe({ spec, shared: params, experts: [a, b] })
    const loaded = await loadExport(out)
    try {
      expect(res.weights.sha256).toBe(loaded.manifest.weights.sha256)
      const mine = here.model.getParams()
      for (const [name, t] of loaded.moe.model.getParams()) expect(bytesOf(t.data), name).toEqual(bytesOf(mine.get(name)!.data))
      expect(bytesOf(loaded.moe.predict(x).probabilities)).toEqual(bytesOf(here.predict(x).probabilities))
    } finally {
      here.dispose()
      loaded.moe.dispose()
    }
  })

  it('exports from a site\'s registry without its withdrawn expert', async () => {
    const storeDir = join(dir.path, 'site')
    const store = await openSiteStore(storeDir)
    const registry = createExpertRegistry({ store, clock })
    await registry.putShared(spec, params, 9)
    for (const art of [a, b, c]) await registry.put(art, { from: art.manifest.siteId })
    await registry.withdraw(await signRevocation({ identity: sites[1]!, expertId: 'b', upToVersion: 1 }, { clock }))
    await store.close()
    const out2 = join(dir.path, 'export-site')
    const r = forgemesh(['export', '--site', storeDir, '--out', out2, '--json'])
    expect(r.code).toBe(0)
    const res = JSON.parse(r.stdout.trim())
    expect(res.experts.map((e: { id: string }) => e.id)).toEqual(['a', 'c'])
    expect(res.masked).toEqual([{ slot: 1, reason: 'absent' }])
    const loaded = await loadExport(out2)
    expect(loaded.manifest.shared).toEqual({ round: 9 })
    loaded.moe.dispose()

    const bad = forgemesh(['export', '--out', out2])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toBe('forgemesh: give --site DIR, or --shared FILE with --artifacts\n')
  })

  it('serves the export: attribution, exclude, 400 on bad bodies, clean stop on SIGTERM', async () => {
    const child = spawn(process.execPath, [cli, 'serve', '--model', out, '--port', '0', '--backend', 'cpu', '--json'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => { resolve(code) }))
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`serve did not start within 60 s: ${stderr}`)) }, 60_000)
        createInterface({ input: child.stdout }).once('line', l => { clearTimeout(timer); resolve(l) })
        void exited.then(code => { reject(new Error(`serve exited with ${code}: ${stderr}`)) })
      })
      const started = JSON.parse(line) as { url: string, experts: string[] }
      expect(started.experts).toEqual(['a', 'b'])
      const post = async (body: string): Promise<{ status: number, json: any }> => {
        const res = await fetch(`${started.url}/v1/predict`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
        return { status: res.status, json: await res.json() }
      }
      const rows = Array.from({ length: 5 }, (_, i) => Array.from(x.subarray(i * 8, i * 8 + 8)))
      const here = assembleMoe({ spec, shared: params, experts: [a, b] })
      const want = here.predict(x)
      const excl = here.predict(x, { exclude: ['a'] })
      here.dispose()

      const ok = await post(JSON.stringify({ inputs: rows }))
      expect(ok.status).toBe(200)
      expect(ok.json.predictions).toHaveLength(5)
      ok.json.predictions.forEach((p: { label: number, probabilities: number[], experts: Array<{ id: string, owner: string, weight: number }> }, i: number) => {
        expect(p.probabilities).toEqual(Array.from(want.probabilities.subarray(i * 4, i * 4 + 4)))
        expect(p.label).toBe(p.probabilities.indexOf(Math.max(...p.probabilities)))
        // top-2 over the two present experts: both used, weights sum to 1, owners named.
        expect(p.experts.map(e => e.id).sort()).toEqual(['a', 'b'])
        expect(p.experts.map(e => e.weight)).toEqual(p.experts.map(e => want.gates[i * 3 + (e.id === 'a' ? 0 : 1)]))
        expect(p.experts.find(e => e.id === 'b')!.owner).toBe(sites[1]!.peerId)
      })

      const ex = await post(JSON.stringify({ inputs: rows, exclude: ['a'] }))
      expect(ex.status).toBe(200)
      ex.json.predictions.forEach((p: { probabilities: number[], experts: Array<{ id: string, weight: number }> }, i: number) => {
        expect(p.experts).toEqual([{ id: 'b', owner: sites[1]!.peerId, weight: 1 }])
        expect(p.probabilities).toEqual(Array.from(excl.probabilities.subarray(i * 4, i * 4 + 4)))
      })

      expect(await post(JSON.stringify({ inputs: [[1, 2]] }))).toEqual({ status: 400, json: { error: 'inputs.0: each input row must hold 8 numbers' } })
      expect(await post(JSON.stringify({ inputs: rows, exclude: ['zz'] }))).toEqual({ status: 400, json: { error: "exclude: unknown expert 'zz'; this model has 'a', 'b'" } })
      expect(await post(JSON.stringify({ inputs: [] }))).toMatchObject({ status: 400, json: { error: expect.stringMatching(/^inputs: /) } })
      expect(await post(JSON.stringify({ inputs: rows, extra: 1 }))).toMatchObject({ status: 400, json: { error: expect.stringMatching(/Unrecognized key.*extra/) } })
      expect(await post('{"inputs": [[')).toEqual({ status: 400, json: { error: 'body is not valid JSON' } })
      const status = await (await fetch(`${started.url}/status`)).json()
      expect(status).toMatchObject({ model: out, experts: [{ slot: 0, id: 'a', usable: true }, { slot: 1, id: 'b', usable: true }], router: 'learned', requests: 2 })
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
  })

  it('refuses an export whose weights do not match its manifest', () => {
    const copy = join(dir.path, 'export-bad')
    forgemesh(['export', '--shared', join(dir.path, 'shared.safetensors'), '--out', copy])
    writeFileSync(join(copy, 'model.safetensors'), Buffer.from('not the weights'))
    const r = forgemesh(['serve', '--model', copy, '--port', '0', '--backend', 'cpu'])
    expect(r.code).toBe(1)
    const declared = (JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8')) as { weights: { bytes: number } }).weights.bytes
    expect(r.stderr).toBe(`forgemesh: model.safetensors is 15 bytes, the manifest says ${declared}\n`)
  })
})
