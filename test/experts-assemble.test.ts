/**
 * Assembly, opt-out, pluggable routing, export and load. The default router
 * reproduces the model's own routing; an opted-out (or excluded) expert gets
 * gate 0 on every row and its weights cannot change any output; export ->
 * load gives back the same parameters and the same outputs bit for bit.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createManualClock, createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import { buildArtifact, type VerifiedArtifact } from '../node/experts/artifact.ts'
import { assembleMoe } from '../node/experts/assemble.ts'
import { exportModel, loadExport } from '../node/experts/export.ts'
import { selectGates, softmaxRows, type RouterFactory } from '../node/experts/gates.ts'
import { gatesFromScores } from '../coordinator/routing/router.ts'
import type { SiteIdentity } from '../node/identity.ts'
import { selectBackend } from '../node/model/backend.ts'
import { createModel } from '../node/model/create.ts'
import { initParams } from '../node/model/params.ts'
import { parseMoeSpec, type MoeSpec } from '../node/model/spec.ts'
import { identities, tempDir } from './mesh-helpers.ts'

const clock = createManualClock(1_700_000_000_000)
const N = 64

function inputs (spec: MoeSpec, seed: number): Float32Array {
  const r = createSeededRandom(seed)
  return Float32Array.from({ length: N * spec.inputDim }, () => r.normal() * 2)
}

function bytesOf (a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength)
}

function maxAbsDiff (a: Float32Array, b: Float32Array): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

/** Expert slot weights scaled up, so a masked expert that ran would show. */
function loud (params: TensorMap, slot: number): TensorMap {
  return new Map([...params].map(([n, t]) => [n, n.startsWith(`expert.${slot}.`) ? { shape: t.shape, data: t.data.map(v => v * 50 + 1) } : t]))
}

describe('assembly, opt-out and export', () => {
  const dir = tempDir('fm-assemble-')
  const spec = parseMoeSpec({ inputDim: 10, width: 8, expertHidden: 6, experts: 4, topK: 1, classes: 5, seed: 21, routerInitScale: 4 })
  const params = initParams(spec)
  let sites: SiteIdentity[]
  let experts: VerifiedArtifact[]
  const x = inputs(spec, 5)

  const artifactsFor = async (s: MoeSpec, p: TensorMap): Promise<VerifiedArtifact[]> => await Promise.all(['a', 'b', 'c'].map(async (id, slot) =>
    await buildArtifact({ identity: sites[slot]!, spec: s, expertId: id, slot, version: 1, sampleCount: 100 * (slot + 1), metrics: { accuracy: 0.9 + slot / 100 }, params: p, router: new Map([['router.row.w', { shape: [s.width], data: new Float32Array(s.width).fill(slot + 1) }], ['router.row.b', { shape: [1], data: Float32Array.from([-slot]) }]]) }, { clock })))

  beforeAll(async () => {
    await selectBackend('cpu', createSilentLogger())
    sites = await identities(dir.path, 3)
    experts = await artifactsFor(spec, params)
  })
  afterAll(() => { dir.remove() })

  it('with nothing masked, the default router routes as the model itself does', async () => {
    for (const topK of [1, 2] as const) {
      const s = parseMoeSpec({ ...spec, topK, experts: 3 })
      const p = initParams(s)
      const own = createModel(s, p)
      const moe = assembleMoe({ spec: s, shared: p, experts: await artifactsFor(s, p) })
      expect(maxAbsDiff(moe.predict(x).probabilities, own.predict(x))).toBeLessThan(1e-5)
      const g = moe.gates(x)
      for (let i = 0; i < N; i++) expect(g.subarray(i * 3, i * 3 + 3).filter(v => v > 0)).toHaveLength(topK)
      moe.dispose()
      own.dispose()
    }
  })

  it('an absent slot and an opted-out expert get gate 0 on every row; the rest renormalise', () => {
    const moe = assembleMoe({ spec, shared: params, experts, optOut: ['b'], selection: { topK: 'all' } })
    expect(Array.from(moe.mask)).toEqual([1, 0, 1, 0])
    const g = moe.gates(x)
    for (let i = 0; i < N; i++) {
      expect([g[i * 4 + 1], g[i * 4 + 3]]).toEqual([0, 0])
      expect(g[i * 4]! + g[i * 4 + 2]!).toBeCloseTo(1, 6)
    }
    // Renormalised, not retrained: the ratio between the usable experts is the router's own.
    const h = moe.model.features(x)
    const scores = moe.router.scores(h, N, x)
    for (let i = 0; i < N; i++) expect(Math.abs(g[i * 4]! - scores[i * 4]! / (scores[i * 4]! + scores[i * 4 + 2]!))).toBeLessThan(1e-6)
    moe.dispose()
  })

  it('a masked expert\'s weights cannot change any output; an unmasked one\'s do', () => {
    const base = assembleMoe({ spec, shared: params, experts, optOut: ['b'] })
    const louder = experts.map(a => a.manifest.expertId === 'b' ? { ...a, weights: loud(a.weights, 1) } : a)
    const masked = assembleMoe({ spec, shared: params, experts: louder, optOut: ['b'] })
    const unmasked = assembleMoe({ spec, shared: params, experts: louder })
    const plain = assembleMoe({ spec, shared: params, experts })
    try {
      expect(bytesOf(masked.predict(x).probabilities)).toEqual(bytesOf(base.predict(x).probabilities))
      expect(maxAbsDiff(unmasked.predict(x).probabilities, plain.predict(x).probabilities)).toBeGreaterThan(0.01)
      // A per-request exclude is the same mask as an opt-out at assembly.
      expect(bytesOf(plain.predict(x, { exclude: ['b'] }).probabilities)).toEqual(bytesOf(base.predict(x).probabilities))
      expect(() => plain.gates(x, { exclude: ['zz'] })).toThrowError(expect.objectContaining({ name: 'AssemblyError', message: "unknown expert 'zz'; this model has 'a', 'b', 'c'" }))
    } finally {
      for (const m of [base, masked, unmasked, plain]) m.dispose()
    }
  })

  it('merges the router rows the artifacts carry (FlexOlmo-style) when asked', () => {
    const moe = assembleMoe({ spec, shared: params, experts, routerRows: 'artifacts' })
    const w = moe.model.getParams().get('shared.router.w')!
    const b = moe.model.getParams().get('shared.router.b')!
    for (let slot = 0; slot < 3; slot++) {
      for (let k = 0; k < spec.width; k++) expect(w.data[k * 4 + slot]).toBe(slot + 1)
      expect(b.data[slot]).toBe(-slot)
    }
    expect(w.data[3]).toBe(params.get('shared.router.w')!.data[3])
    moe.dispose()
  })

  it('refuses two experts on one slot', async () => {
    const clash = await buildArtifact({ identity: sites[1]!, spec, expertId: 'other', slot: 0, version: 1, sampleCount: 1, params }, { clock })
    expect(() => assembleMoe({ spec, shared: params, experts: [...experts, clash] })).toThrowError(expect.objectContaining({
      name: 'AssemblyError', message: `slot 0 is claimed by 'a' of ${sites[0]!.peerId} and 'other' of ${sites[1]!.peerId}`
    }))
  })

  it('exports and loads back bit for bit: parameters, gates, probabilities, manifest', async () => {
    const moe = assembleMoe({ spec, shared: params, experts, optOut: ['c'] })
    const out = join(dir.path, 'export')
    const manifest = await exportModel(moe, out, { metrics: { accuracy: 0.97 }, round: 12, signatures: new Map(experts.map(a => [a.hash, a.signature])) }, { clock })
    const loaded = await loadExport(out)
    try {
      expect(loaded.manifest).toEqual(manifest)
      expect(manifest.experts.map(e => [e.slot, e.id, e.owner, e.artifact])).toEqual([[0, 'a', sites[0]!.peerId, experts[0]!.hash], [1, 'b', sites[1]!.peerId, experts[1]!.hash]])
      expect(manifest.experts[1]!.manifest.metrics).toEqual({ accuracy: 0.91 })
      expect(manifest.masked).toEqual([{ slot: 2, reason: 'opted-out', id: 'c', owner: sites[2]!.peerId }, { slot: 3, reason: 'absent' }])
      expect(manifest).toMatchObject({ format: 'forgemesh-moe-export', architecture: spec, metrics: { accuracy: 0.97 }, shared: { round: 12 }, router: { kind: 'learned', topK: 1, renormalise: false } })
      const original = moe.model.getParams()
      for (const [name, t] of loaded.moe.model.getParams()) {
        const want = name.startsWith('expert.2.') ? new Float32Array(t.data.length) : original.get(name)!.data
        expect(bytesOf(t.data), name).toEqual(bytesOf(want))
      }
      const a = moe.predict(x)
      const b = loaded.moe.predict(x)
      expect(bytesOf(b.gates)).toEqual(bytesOf(a.gates))
      expect(bytesOf(b.probabilities)).toEqual(bytesOf(a.probabilities))
      expect(Array.from(loaded.moe.mask)).toEqual([1, 1, 0, 0])

      // A flipped bit in the weights is caught before anything is loaded.
      const file = join(out, 'model.safetensors')
      const bytes = new Uint8Array(await readFile(file))
      bytes[bytes.length - 1]! ^= 1
      await writeFile(file, bytes)
      await expect(loadExport(out)).rejects.toMatchObject({ name: 'ExportFormatError', message: expect.stringMatching(/^model\.safetensors hashes to [0-9a-f]{64}, the manifest says [0-9a-f]{64}$/) })
      await expect(loadExport(join(dir.path, 'nowhere'))).rejects.toMatchObject({ name: 'ExportFormatError', message: expect.stringMatching(/manifest\.json is missing: not an export folder$/) })
    } finally {
      moe.dispose()
      loaded.moe.dispose()
    }
  })

  it('plugs in another router, and an export of it needs that router to load', async () => {
    // Routes each row to the expert whose saved prototype is nearest (a stand-in for the routing recipe).
    const nearest: RouterFactory = (ctx) => {
      const E = ctx.spec.experts
      const d = ctx.spec.width
      const protos = ctx.saved.get('router.protos') ?? { shape: [E, d], data: Float32Array.from({ length: E * d }, (_, i) => Math.cos(i)) }
      return {
        kind: 'nearest-prototype',
        tensors: new Map([['router.protos', protos]]),
        scores: (h, n) => {
          const out = new Float64Array(n * E)
          for (let i = 0; i < n; i++) {
            let best = 0
            let bestD = Infinity
            for (let e = 0; e < E; e++) {
              let dist = 0
              for (let k = 0; k < d; k++) dist += (h[i * d + k]! - protos.data[e * d + k]!) ** 2
              if (dist < bestD) { bestD = dist; best = e }
            }
            out[i * E + best] = 1
          }
          return out
        }
      }
    }
    const moe = assembleMoe({ spec, shared: params, experts, router: nearest })
    const out = join(dir.path, 'export-nearest')
    await exportModel(moe, out, {}, { clock })
    await expect(loadExport(out)).rejects.toMatchObject({ name: 'ExportFormatError', message: "the export routes with 'nearest-prototype'; pass its factory in routers" })
    const loaded = await loadExport(out, { routers: { 'nearest-prototype': nearest } })
    try {
      const g = moe.gates(x)
      // Hard routing: one gate of exactly 1 per row (a row sent to absent slot 3 spreads over the usable three).
      for (let i = 0; i < N; i++) {
        const row = Array.from(g.subarray(i * 4, i * 4 + 4))
        expect(row[3]).toBe(0)
        const nonzero = row.filter(v => v !== 0)
        expect(nonzero).toHaveLength(1)
        expect([1, Math.fround(1 / 3)]).toContain(nonzero[0])
      }
      expect(bytesOf(loaded.moe.predict(x).probabilities)).toEqual(bytesOf(moe.predict(x).probabilities))
    } finally {
      moe.dispose()
      loaded.moe.dispose()
    }
  })

  it('log-score routers (the density router) give the same gates through softmaxRows as coordinator/routing does', () => {
    const r = createSeededRandom(9)
    const n = 200
    const E = 5
    const logScores = Float64Array.from({ length: n * E }, (_, i) => (i % 37 === 0 ? -Infinity : r.normal() * 30))
    for (let e = 0; e < E; e++) logScores[7 * E + e] = -Infinity
    for (const e of [0, 2, 4]) logScores[11 * E + e] = -Infinity
    for (const topK of [1, 2, 3]) {
      const theirs = gatesFromScores(logScores, n, E, { topK, optOut: new Set([1, 3]) })
      const mine = selectGates(softmaxRows(logScores, n, E), n, E, Uint8Array.from([1, 0, 1, 0, 1]), { topK, renormalise: true })
      let worst = 0
      for (let i = 0; i < n * E; i++) worst = Math.max(worst, Math.abs(theirs[i]! - mine[i]!))
      expect(worst).toBeLessThan(1e-6)
      for (let i = 0; i < n; i++) expect([mine[i * E + 1], mine[i * E + 3]]).toEqual([0, 0])
    }
  })
})
