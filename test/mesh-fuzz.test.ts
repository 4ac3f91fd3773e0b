/**
 * Every wire decoder gets 10,000+ random and mutated inputs: nothing escapes
 * as anything but one of our named errors, and memory stays bounded (claimed
 * lengths are checked before anything is allocated for them).
 */
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { z } from 'zod'
import { createSeededRandom } from '../coordinator/components.ts'
import { decodeTrailedUpdateBody, decodeUpdateBody } from '../node/mesh/update.ts'
import { ArtifactRequest, ArtifactResponse } from '../protocols/artifact/artifact.ts'
import { decodeFrame, decodeFrameHead, encodeFrame, ErrorHeader, FrameParser, parseHeader } from '../protocols/frame/frame.ts'
import { MembershipRequest, MembershipResponse } from '../protocols/membership/membership.ts'
import { ModelRequest, ModelResponse } from '../protocols/model/model.ts'
import { decodeTensors, encodeTensors } from '../protocols/tensor-codec/index.ts'
import { UpdateDigest, UpdateFrame, UpdateRequest, UpdateResponse } from '../protocols/update/update.ts'
import { memory, mutateBytes, mutateHeader, randomBytes, run as runAll, WEIRD, type Tally } from './support/fuzz.ts'

const N = 10_000
const NAMED = new Set(['FrameTooLargeError', 'FrameDecodeError', 'FrameHeaderError', 'TensorCodecError', 'TensorChecksumError'])
const H = 'ab'.repeat(32)

const samples: Array<[string, z.ZodType, unknown[]]> = [
  ['membership request', MembershipRequest, [{ kind: 'hello', site: 'a', roles: ['member'], capabilities: ['train'], modelSpecHash: H, protocols: ['/forgemesh/update/1.0.0'] }]],
  ['membership response', MembershipResponse, [{ kind: 'welcome', site: 'b', roles: [], capabilities: [], modelSpecHash: H, protocols: [] }, { kind: 'refuse', code: 'model-spec-mismatch', reason: 'x' }]],
  ['update request', UpdateRequest, [{ kind: 'update', round: 3, site: 'a', dtype: 'int8', bodyHash: H, numSamples: 10, meta: { loss: 0.5 } }]],
  ['update frame (1.1.0)', UpdateFrame, [{ kind: 'update', round: 3, site: 'a', dtype: 'f32', numSamples: 10 }, { kind: 'update', round: 1, site: 'b', dtype: 'f16', bodyHash: H, meta: { loss: 0.5 } }]],
  ['update digest (1.1.0)', UpdateDigest, [{ kind: 'digest', bodyHash: H }]],
  ['update response', UpdateResponse, [{ kind: 'ack', round: 3, accepted: true }, { kind: 'ack', round: 1, accepted: false, reason: 'late' }]],
  ['model request', ModelRequest, [{ kind: 'get', round: 'latest' }, { kind: 'announce', round: 2, hash: H, bytes: 10, dtype: 'f32', inline: true }]],
  ['model response', ModelResponse, [{ kind: 'aggregate', round: 2, hash: H, bytes: 10, dtype: 'f16', inline: false }, { kind: 'missing', round: 4 }]],
  ['artifact request', ArtifactRequest, [{ kind: 'fetch', hash: H, offset: 5, chunkBytes: 1024 }, { kind: 'stat', hash: H }]],
  ['artifact response', ArtifactResponse, [{ kind: 'chunk', offset: 0, size: 10 }, { kind: 'end', size: 10 }, { kind: 'not-found', hash: H }]],
  ['error frame', ErrorHeader, [{ kind: 'error', code: 'ERR_X', message: 'm' }]]
]

const run = (decode: (bytes: Uint8Array) => unknown, inputs: Iterable<Uint8Array>): Tally => runAll(decode, inputs, NAMED)

describe('fuzzing every wire decoder', () => {
  for (const [name, schema, valid] of samples) {
    it(`${name}: ${N} random and mutated frames, all rejected by name or accepted as valid`, () => {
      const rng = createSeededRandom(`fuzz/${name}`)
      const limits = { maxFrameBytes: 4096 }
      const encoded = valid.map(h => encodeFrame(h, rng.int(2) === 0 ? randomBytes(rng, 16) : undefined))
      function * inputs (): Generator<Uint8Array> {
        for (let i = 0; i < N; i++) {
          const pick = rng.int(3)
          if (pick === 0) yield randomBytes(rng, rng.int(512))
          else if (pick === 1) yield mutateBytes(rng, encoded[rng.int(encoded.length)]!)
          else yield encodeFrame(mutateHeader(rng, valid[rng.int(valid.length)]))
        }
      }
      const before = memory()
      // Whole-frame decoding, and the same bytes through the streaming parser in random cuts.
      const whole = run(bytes => decodeFrame(bytes, schema, limits), inputs())
      const streamed = run((bytes) => {
        const p = new FrameParser(limits)
        const cut = rng.int(bytes.length + 1)
        p.push(bytes.subarray(0, cut))
        p.push(bytes.subarray(cut))
        const f = p.next()
        if (f === undefined) return undefined
        return decodeFrame(f, schema, limits)
      }, inputs())
      // Bodies kept as the pieces they arrived in (the artifact client's reader): head decoded apart.
      const parts = run((bytes) => {
        const p = new FrameParser(limits, { bodyParts: true })
        for (let at = 0; at < bytes.length;) {
          const next = Math.min(bytes.length, at + 1 + rng.int(64))
          p.push(bytes.subarray(at, next))
          at = next
        }
        const f = p.nextFrame()
        if (f === undefined) return undefined
        let body = 0
        for (const b of f.bodyParts!) body += b.byteLength
        return parseHeader(decodeFrameHead(f.bytes, body, limits), schema)
      }, inputs())
      for (const t of [whole, streamed, parts]) {
        expect(t.escaped).toEqual([])
        expect(t.inputs).toBe(N)
        expect(t.accepted + [...t.rejected.values()].reduce((a, b) => a + b, 0)).toBe(N)
        expect(t.rejected.get('FrameHeaderError') ?? 0).toBeGreaterThan(N / 10)
        expect(t.rejected.get('FrameTooLargeError') ?? 0).toBeGreaterThan(0)
        expect(t.rejected.get('FrameDecodeError') ?? 0).toBeGreaterThan(0)
      }
      expect(memory() - before).toBeLessThan(64 * 1024 * 1024)
    })
  }

  it(`tensor codec and update bodies (1.0.0 and 1.1.0): ${N} random, mutated and re-hashed bodies each`, () => {
    const rng = createSeededRandom('fuzz/tensors')
    const valid = (['f32', 'f16', 'int8'] as const).map(dtype => encodeTensors(new Map([
      ['a', { shape: [3, 5], data: Float32Array.from({ length: 15 }, () => rng.normal()) }],
      ['b', { shape: [17], data: Float32Array.from({ length: 17 }, () => rng.normal()) }]
    ]), { dtype, blockSize: 8 }))
    const rehash = (b: Uint8Array): Uint8Array => {
      if (b.length >= 36) b.set(createHash('sha256').update(b.subarray(36)).digest(), 4)
      return b
    }
    const manifestMutation = (src: Uint8Array): Uint8Array => {
      // Rewrite the JSON manifest with a damaged field, keep the data, fix the hash: only the layout checks stand.
      const len = new DataView(src.buffer, src.byteOffset).getUint32(36)
      const manifest = JSON.parse(Buffer.from(src.subarray(40, 40 + len)).toString()) as { tensors: Array<Record<string, unknown>> }
      const t = manifest.tensors[rng.int(manifest.tensors.length)]!
      const field = ['name', 'dtype', 'shape', 'blockSize'][rng.int(4)]!
      t[field] = field === 'shape' ? [rng.int(2 ** 31), rng.int(2 ** 31)].slice(0, 1 + rng.int(2)) : WEIRD[rng.int(WEIRD.length)]
      if (rng.int(5) === 0) manifest.tensors.push(manifest.tensors[0]!)
      const json = Buffer.from(JSON.stringify(manifest))
      const dataStart = (40 + len + 7) & ~7
      const head = new Uint8Array((40 + json.length + 7) & ~7)
      head.set(src.subarray(0, 36))
      new DataView(head.buffer).setUint32(36, json.length)
      head.set(json, 40)
      return rehash(new Uint8Array([...head, ...src.subarray(dataStart)]))
    }
    function * inputs (): Generator<Uint8Array> {
      for (let i = 0; i < N; i++) {
        const src = valid[rng.int(valid.length)]!
        switch (rng.int(4)) {
          case 0: yield randomBytes(rng, rng.int(400)); break
          case 1: yield mutateBytes(rng, src); break
          case 2: yield rehash(mutateBytes(rng, src)); break
          default: yield manifestMutation(src)
        }
      }
    }
    const before = memory()
    const codec = run(bytes => decodeTensors(bytes, { maxBytes: 1 << 20 }), inputs())
    const carried = (bytes: Uint8Array): string => bytes.length >= 36 ? Buffer.from(bytes.subarray(4, 36)).toString('hex') : H
    const update = run(bytes => decodeUpdateBody({ kind: 'update', round: 1, site: 's', dtype: 'f32', bodyHash: carried(bytes) }, bytes, 1 << 20), inputs())
    // 1.1.0: the same bodies with the carried hash as their trailing digest, the hash field zeroed in transit.
    const trailed = run((bytes) => {
      const digest = carried(bytes)
      if (bytes.length >= 36) bytes.fill(0, 4, 36)
      return decodeTrailedUpdateBody({ kind: 'update', round: 1, site: 's', dtype: 'f32' }, bytes, { kind: 'digest', bodyHash: digest }, 1 << 20)
    }, inputs())
    for (const t of [codec, update, trailed]) {
      expect(t.escaped).toEqual([])
      expect(t.inputs).toBe(N)
      expect(t.rejected.get('TensorChecksumError') ?? 0).toBeGreaterThan(N / 10)
      expect(t.rejected.get('TensorCodecError') ?? 0).toBeGreaterThan(N / 10)
      expect(t.accepted).toBeLessThan(N / 4)
    }
    expect(memory() - before).toBeLessThan(64 * 1024 * 1024)
  })
})
