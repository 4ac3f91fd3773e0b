/**
 * Fuzzing what travels inside or beside expert artifacts, under the rule of
 * test/mesh-fuzz.test.ts: nothing escapes but one of our named errors
 * (instanceof ForgemeshError, only the names listed), and whatever is
 * accepted is exactly what was signed. Covered: safetensors bytes, a real
 * signed artifact with its bytes, header, manifest and signature damaged,
 * signed revocation records, and the routing releases as router.* tensors.
 */
import { createHash } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { createManualClock, createSeededRandom, type Random } from '../coordinator/components.ts'
import type { Moments } from '../coordinator/routing/moments.ts'
import type { SiteRelease } from '../coordinator/routing/release.ts'
import { buildArtifact, memberKeys, verifyArtifact, type VerifiedArtifact } from '../node/experts/artifact.ts'
import { signRevocation, verifyRevocation, type SignedRevocation } from '../node/experts/revocation.ts'
import {
  componentsFromTensors, componentsToTensors, globalMomentsFromTensors, globalMomentsToTensors, projectionFromTensors, projectionToTensors
} from '../node/federation/release-tensors.ts'
import { identityFromSeed, type SiteIdentity } from '../node/identity.ts'
import { initParams } from '../node/model/params.ts'
import { parseMoeSpec, specHash } from '../node/model/spec.ts'
import { DTYPE_BYTES } from '../protocols/safetensors/constants.ts'
import { decodeSafetensors, encodeSafetensors } from '../protocols/safetensors/safetensors.ts'
import type { Tensor, TensorMap } from '../protocols/tensors.ts'
import { memory, mutateDeep, randomBytes, run, runAsync, total, weird, type Tally } from './support/fuzz.ts'

const N = 10_000
const MEMORY_BOUND = 64 * 1024 * 1024

function expectTally (t: Tally, inputs: number, allowed: string[], min: Record<string, number>): void {
  if (process.env.FUZZ_DEBUG !== undefined) console.log(JSON.stringify({ accepted: t.accepted, rejected: Object.fromEntries(t.rejected) }))
  expect({ escaped: t.escaped.length, first: t.escaped.slice(0, 5) }).toEqual({ escaped: 0, first: [] })
  expect(t.inputs).toBe(inputs)
  expect(total(t)).toBe(inputs)
  expect([...t.rejected.keys()].filter(name => !allowed.includes(name))).toEqual([])
  for (const [name, count] of Object.entries(min)) expect([name, t.rejected.get(name) ?? 0, (t.rejected.get(name) ?? 0) >= count]).toEqual([name, expect.any(Number), true])
}

// --- safetensors framing: u64 little-endian header length, JSON header, data ---

function split (bytes: Uint8Array): { header: Record<string, unknown>, data: Uint8Array } {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true)
  return { header: JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString()) as Record<string, unknown>, data: bytes.subarray(8 + n) }
}

function join (header: unknown, data: Uint8Array): Uint8Array {
  const json = Buffer.from(JSON.stringify(header) ?? 'null')
  const padded = Math.ceil(json.length / 8) * 8
  const out = new Uint8Array(8 + padded + data.length).fill(0x20, 8, 8 + padded)
  new DataView(out.buffer).setUint32(0, padded, true)
  out.set(json, 8)
  out.set(data, 8 + padded)
  return out
}

/** Byte-level damage, including hostile values in the u64 header length. */
function mutateSafetensorsBytes (rng: Random, src: Uint8Array): Uint8Array {
  let b = src.slice()
  const headerEnd = 8 + new DataView(src.buffer, src.byteOffset).getUint32(0, true)
  for (let r = 1 + rng.int(3); r > 0; r--) {
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
    switch (rng.int(7)) {
      case 0: if (b.length > 0) b[rng.int(b.length)]! ^= 1 << rng.int(8); break
      case 1: if (b.length > 8) b[8 + rng.int(Math.min(b.length, headerEnd) - 8)] = rng.int(256); break
      case 2: b = b.subarray(0, rng.int(b.length + 1)); break
      case 3: b = new Uint8Array([...b, ...randomBytes(rng, 1 + rng.int(64))]); break
      case 4: if (b.length >= 8) view.setUint32(0, [0xffffffff, b.length - 8, headerEnd - 8 + rng.int(17) - 8, rng.int(2 ** 32), 100_000_001][rng.int(5)]! >>> 0, true); break
      case 5: if (b.length >= 8) view.setUint32(4, 1 + rng.int(2 ** 31), true); break
      default: if (b.length > headerEnd) b[headerEnd + rng.int(b.length - headerEnd)]! ^= 1 << rng.int(8)
    }
  }
  return b
}

const DTYPES = Object.keys(DTYPE_BYTES)

/** Damage to one tensor entry that keeps the JSON well-formed: another dtype, shape or offsets. */
function mutateEntry (rng: Random, header: Record<string, unknown>): Record<string, unknown> {
  const h = structuredClone(header)
  const names = Object.keys(h).filter(k => k !== '__metadata__')
  const e = h[names[rng.int(names.length)]!] as { dtype: string, shape: number[], data_offsets: number[] }
  switch (rng.int(4)) {
    case 0: e.dtype = DTYPES[rng.int(DTYPES.length)]!; break
    case 1: e.shape = rng.int(2) === 0 ? [...e.shape].reverse().concat(rng.int(3) === 0 ? [1] : []) : e.shape.map(d => d * (1 + rng.int(3))); break
    case 2: e.data_offsets = e.data_offsets.map(o => o + (rng.int(3) - 1) * [1, 4, 2 ** 32][rng.int(3)]!); break
    default: e.shape = [2 ** 26, 2 ** 26, 2 ** 26, 0].slice(rng.int(2))
  }
  return h
}

describe('fuzzing decodeSafetensors', () => {
  it(`${N} random, damaged and re-framed files: refused by name, or decoded with shapes that fit the data`, () => {
    const rng = createSeededRandom('fuzz/safetensors')
    const map: TensorMap = new Map([
      ['a.w', { shape: [3, 5], data: Float32Array.from({ length: 15 }, () => rng.normal()) }],
      ['b', { shape: [7], data: Float32Array.from({ length: 7 }, () => rng.normal()) }],
      ['c', { shape: [], data: Float32Array.from([1.5]) }]
    ])
    const valid = (['F32', 'F16', 'BF16'] as const).map(dtype => encodeSafetensors(map, { format: 'pt', note: 'x' }, { dtype }))
    const maxBytes = Math.max(...valid.map(v => v.length)) + 40
    function * inputs (): Generator<Uint8Array> {
      for (let i = 0; i < N; i++) {
        const src = valid[rng.int(valid.length)]!
        switch (rng.int(5)) {
          case 0: yield randomBytes(rng, rng.int(300)); break
          case 1: case 2: yield mutateSafetensorsBytes(rng, src); break
          case 3: { const { header, data } = split(src); yield join(mutateEntry(rng, header), data); break }
          default: { const { header, data } = split(src); yield join(mutateDeep(rng, header), data) }
        }
      }
    }
    const before = memory()
    const t = run((bytes) => {
      const out = decodeSafetensors(bytes, { maxBytes })
      for (const [name, tensor] of out.tensors) {
        if (tensor.data.length !== tensor.shape.reduce((a, d) => a * d, 1)) throw new Error(`accepted '${name}' with shape [${tensor.shape.join(', ')}] over ${tensor.data.length} values`)
      }
      return out
    }, inputs())
    expectTally(t, N, ['SafetensorsFormatError', 'SafetensorsTooLargeError', 'SafetensorsDtypeError'], { SafetensorsFormatError: N / 3, SafetensorsTooLargeError: 1, SafetensorsDtypeError: 1 })
    expect(t.accepted).toBeGreaterThan(0)
    expect(memory() - before).toBeLessThan(MEMORY_BOUND)
  })
})

describe('fuzzing signed records: artifacts and revocations', () => {
  const spec = parseMoeSpec({ inputDim: 8, width: 6, expertHidden: 5, experts: 3, topK: 1, classes: 4, seed: 7 })
  const clock = createManualClock(1_700_000_000_000)
  let site: SiteIdentity, other: SiteIdentity, outsider: SiteIdentity
  let members: Map<string, Uint8Array>
  let good: VerifiedArtifact
  let revocation: SignedRevocation

  beforeAll(async () => {
    [site, other, outsider] = await Promise.all([1, 2, 3].map(async i => await identityFromSeed(new Uint8Array(32).fill(i)))) as [SiteIdentity, SiteIdentity, SiteIdentity]
    members = memberKeys([site.peerId, other.peerId])
    const global = { dim: 4, count: 120, sum: Float64Array.from([1, 2, 3, 4]), outer: Float64Array.from({ length: 10 }, (_, i) => i / 3) }
    good = await buildArtifact({
      identity: site, spec, expertId: 'digits-01', slot: 1, version: 2, parentVersion: 1, sampleCount: 12_000,
      metrics: { accuracy: 0.991, loss: 0.031 }, params: initParams(spec), router: globalMomentsToTensors(global)
    }, { clock })
    revocation = await signRevocation({ identity: site, expertId: 'digits-01', upToVersion: 2, reason: 'retrained on cleaned labels' }, { clock })
  })

  /** Accepted means: exactly the signed content (a harmless respelling of the file is fine, another meaning is not). */
  const sameAsSigned = (v: VerifiedArtifact): void => {
    const bits = (m: TensorMap): string[] => [...m].map(([n, t]) => `${n}[${t.shape.join(',')}]${Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex')}`)
    if (JSON.stringify(v.manifest) !== JSON.stringify(good.manifest) || v.signature !== good.signature ||
      bits(v.weights).join() !== bits(good.weights).join() || bits(v.router).join() !== bits(good.router).join()) throw new Error(`accepted a changed artifact ${v.hash}`)
  }

  it(`verifyArtifact: ${N} damaged copies of one real signed artifact (bytes, header, manifest, signature)`, async () => {
    const rng = createSeededRandom('fuzz/artifact')
    const { header, data } = split(good.bytes)
    const meta = header.__metadata__ as Record<string, string>
    const withMeta = (key: string, value: unknown): Uint8Array => join({ ...header, __metadata__: { ...meta, [key]: value } }, data)
    function * inputs (): Generator<[Uint8Array, boolean]> {
      for (let i = 0; i < N; i++) {
        let bytes: Uint8Array
        switch (rng.int(8)) {
          case 0: bytes = randomBytes(rng, rng.int(600)); break
          case 1: case 2: bytes = mutateSafetensorsBytes(rng, good.bytes); break
          case 3: bytes = join(mutateEntry(rng, header), data); break
          case 4: bytes = join(mutateDeep(rng, header), data); break
          case 5: case 6: {
            // The manifest: a damaged field at any depth, or the same fields in another order and spelling.
            const manifest = JSON.parse(meta['forgemesh.manifest']!) as Record<string, unknown>
            bytes = withMeta('forgemesh.manifest', rng.int(6) === 0 ? JSON.stringify(Object.fromEntries(Object.entries(manifest).reverse()), null, 1) : JSON.stringify(mutateDeep(rng, manifest)))
            break
          }
          default: bytes = withMeta('forgemesh.signature', [Buffer.from(randomBytes(rng, 64)).toString('base64'), mutateDeep(rng, meta['forgemesh.signature']), weird(rng)][rng.int(3)])
        }
        // A hostile peer announces whatever address its bytes hash to; sometimes the address is the one asked for.
        yield [bytes, rng.int(4) !== 0]
      }
    }
    const before = memory()
    const t = await runAsync(async ([bytes, ownAddress]) => {
      const expectedHash = ownAddress ? createHash('sha256').update(bytes).digest('hex') : good.hash
      sameAsSigned(await verifyArtifact(bytes, { members, specHash: specHash(spec), spec, expectedHash }))
    }, inputs())
    expectTally(t, N, ['ArtifactFormatError', 'ArtifactHashMismatchError', 'ArtifactSignatureError', 'NotAMemberError', 'SpecMismatchError'], {
      ArtifactFormatError: N / 5, ArtifactHashMismatchError: N / 10, ArtifactSignatureError: N / 50, NotAMemberError: 1
    })
    expect(memory() - before).toBeLessThan(MEMORY_BOUND)
  })

  it(`verifyRevocation: ${N} damaged signed revocation records`, async () => {
    const rng = createSeededRandom('fuzz/revocation')
    const byOutsider = await signRevocation({ identity: outsider, expertId: 'digits-01', upToVersion: 2 }, { clock })
    const byOther = await signRevocation({ identity: other, expertId: 'digits-01', upToVersion: 9 }, { clock })
    // Another member's valid signature over a record that names this site: only the owner may withdraw.
    const forged = { revocation: { ...byOther.revocation, siteId: site.peerId }, signature: byOther.signature }
    function * inputs (): Generator<unknown> {
      for (let i = 0; i < N; i++) {
        switch (rng.int(10)) {
          case 0: yield weird(rng); break
          case 1: yield [byOutsider, forged, revocation][rng.int(3)]; break
          default: yield mutateDeep(rng, revocation)
        }
      }
    }
    const before = memory()
    const t = await runAsync(async (input) => {
      const out = await verifyRevocation(input, members)
      if (JSON.stringify(out) !== JSON.stringify(revocation)) throw new Error(`accepted a changed revocation: ${JSON.stringify(out)}`)
    }, inputs())
    expectTally(t, N, ['ArtifactFormatError', 'NotAMemberError', 'ArtifactSignatureError'], { ArtifactFormatError: N / 3, NotAMemberError: N / 100, ArtifactSignatureError: N / 20 })
    expect(t.accepted).toBeGreaterThan(0)
    expect(memory() - before).toBeLessThan(MEMORY_BOUND)
  })
})

describe('fuzzing the routing release tensors (router.* inside artifacts)', () => {
  it('refuses a projection whose clip norm is Infinity (found by the fuzzer below)', () => {
    const p = projectionToTensors({ inputDim: 2, dim: 1, mean: Float64Array.from([0, 0]), basis: Float64Array.from([1, 0]), clipNorm: Infinity })
    expect(() => projectionFromTensors(p)).toThrowError(expect.objectContaining({ name: 'FederationError', message: 'routing projection has inconsistent shapes or clip: mean 2, basis [2, 1], clip Infinity' }))
    p.set('router.projection.clip', { shape: [1], data: Float32Array.from([0.5]) })
    expect(projectionFromTensors(p).clipNorm).toBe(0.5)
  })

  it(`${N} random and damaged TensorMaps through globalMomentsFromTensors, componentsFromTensors and projectionFromTensors`, () => {
    const rng = createSeededRandom('fuzz/release-tensors')
    const normals = (n: number): Float64Array => Float64Array.from({ length: n }, () => rng.normal())
    const moments = (dim: number): Moments => ({ dim, count: 50, sum: normals(dim), outer: normals(dim * (dim + 1) / 2) })
    const release: SiteRelease = { expert: 2, components: [0, 1, 2, 3].map(i => ({ label: i >> 1, cell: i & 1, moments: moments(3) })) }
    const base: TensorMap = new Map([
      ...globalMomentsToTensors(moments(5)),
      ...componentsToTensors(release),
      ...projectionToTensors({ inputDim: 5, dim: 3, mean: normals(5), basis: normals(15), clipNorm: 2 })
    ])
    const names = [...base.keys()]
    const hostile = [NaN, Infinity, -Infinity, -1, 0, 0.5, 3.4e38, -0, 2 ** 31]
    const randomTensor = (): Tensor => {
      const shape = Array.from({ length: rng.int(4) }, () => rng.int(7))
      const n = shape.reduce((a, d) => a * d, 1) + (rng.int(5) === 0 ? rng.int(3) - 1 : 0)
      return { shape, data: Float32Array.from({ length: Math.max(0, n) }, () => rng.int(8) === 0 ? hostile[rng.int(hostile.length)]! : rng.normal()) }
    }
    const damage = (map: TensorMap): TensorMap => {
      const out: TensorMap = new Map([...map].map(([n, t]) => [n, { shape: [...t.shape], data: t.data.slice() }]))
      for (let r = 1 + rng.int(3); r > 0; r--) {
        const name = names[rng.int(names.length)]!
        const t = out.get(name)
        switch (rng.int(6)) {
          case 0: out.delete(name); break
          case 1: out.set(name, randomTensor()); break
          case 2: if (t !== undefined && t.shape.length > 0) t.shape[rng.int(t.shape.length)] = [0, 1, -1, 2 ** 31, NaN, t.shape[0]! + 1][rng.int(6)]!; break
          case 3: if (t !== undefined) out.set(name, { shape: rng.int(2) === 0 ? t.shape : [t.data.length + 1], data: Float32Array.from([...t.data, rng.normal()]).subarray(0, rng.int(t.data.length + 2)) }); break
          case 4: if (t !== undefined && t.data.length > 0) t.data[rng.int(t.data.length)] = hostile[rng.int(hostile.length)]!; break
          default: { const other = out.get(names[rng.int(names.length)]!); if (t !== undefined && other !== undefined) out.set(name, other) }
        }
      }
      return out
    }
    function * inputs (): Generator<TensorMap> {
      for (let i = 0; i < N; i++) {
        if (rng.int(5) === 0) yield new Map(names.filter(() => rng.int(4) !== 0).map(n => [n, randomTensor()]))
        else yield damage(base)
      }
    }
    const finite = (...arrays: Array<ArrayLike<number>>): boolean => arrays.every(a => Array.prototype.every.call(a, Number.isFinite))
    const consistent = (m: Moments): boolean => m.dim >= 1 && m.sum.length === m.dim && m.outer.length === m.dim * (m.dim + 1) / 2 && finite([m.count], m.sum, m.outer)
    const decoders: Array<[string, (map: TensorMap) => boolean]> = [
      ['global', map => consistent(globalMomentsFromTensors(map))],
      ['components', (map) => { const r = componentsFromTensors(map, rng.int(5) === 0 ? -1 : 2); return r.components.every(c => consistent(c.moments) && Number.isInteger(c.label) && Number.isInteger(c.cell)) }],
      ['projection', (map) => {
        const p = projectionFromTensors(map)
        return p.dim >= 1 && p.dim <= p.inputDim && p.mean.length === p.inputDim && p.basis.length === p.inputDim * p.dim && finite(p.mean, p.basis, [p.clipNorm]) && p.clipNorm > 0
      }]
    ]
    const maps = [...inputs()]
    const before = memory()
    for (const [name, decode] of decoders) {
      const t = run((map) => { if (!decode(map)) throw new Error(`${name}: accepted an inconsistent or non-finite release`) }, maps)
      expectTally(t, N, ['FederationError', 'RoutingInputError'], { FederationError: N / 10 })
      expect([name, t.accepted > N / 20]).toEqual([name, true])
    }
    expect(memory() - before).toBeLessThan(MEMORY_BOUND)
  })
})
