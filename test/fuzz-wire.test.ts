/**
 * The wire decoders that came after test/mesh-fuzz.test.ts, under the same
 * rule: 10,000 random and mutated inputs each, nothing escapes but one of our
 * named errors (instanceof ForgemeshError, and only the names listed), and
 * memory stays bounded. Covered: experts-announce frames and inventory
 * bodies; every secagg message kind through the frame, fromWire and
 * coordinator/secagg's schemas; routing releases in their JSON form.
 */
import { describe, expect, it } from 'vitest'
import type { z } from 'zod'
import { createSeededRandom, type Random } from '../coordinator/components.ts'
import type { SiteRelease } from '../coordinator/routing/release.ts'
import { decodeSiteRelease, encodeSiteRelease } from '../coordinator/routing/schema.ts'
import { parseMessage } from '../coordinator/secagg/common.ts'
import {
  AdvertiseSchema, BOX_BYTES, ConsistencySchema, DeliverySchema, MaskedInputSchema, RosterSchema, SharesSchema,
  SurvivorsSchema, UnmaskRequestSchema, UnmaskSchema
} from '../coordinator/secagg/messages.ts'
import { KEY_BYTES } from '../coordinator/secagg/primitives.ts'
import { SHARE_BYTES } from '../coordinator/secagg/shamir.ts'
import { decodeGlobalMoments, encodeGlobalMoments } from '../node/federation/routing-releases.ts'
import { EXPERTS_ANNOUNCE_MAX_FRAME_BYTES } from '../protocols/experts-announce/constants.ts'
import { AnnounceRequest, AnnounceResponse, decodeInventory } from '../protocols/experts-announce/experts-announce.ts'
import { decodeFrame, encodeFrame } from '../protocols/frame/frame.ts'
import { SECAGG_MAX_FRAME_BYTES } from '../protocols/secagg/constants.ts'
import { fromWire, SecAggReply, SecAggRequest, toWire, type SecAggStage } from '../protocols/secagg/secagg.ts'
import { memory, mutateBytes, mutateDeep, randomBytes, run, total, WEIRD, type Tally } from './support/fuzz.ts'

const N = 10_000
const H = 'ab'.repeat(32)
const PEER = '12D3KooWJ5QfCiL2moKbofBnXrgm9AeMtwHHSMFkC1f8pmEVEvaM'
const FRAME_ERRORS = ['FrameTooLargeError', 'FrameDecodeError', 'FrameHeaderError']
const MEMORY_BOUND = 64 * 1024 * 1024

interface Sample { header: unknown, body?: Uint8Array }

/** Random bytes, damaged valid frames, valid frames with a damaged header (at any depth) or body, and valid frames. */
function * frameInputs (rng: Random, valid: Sample[], n: number): Generator<Uint8Array> {
  const encoded = valid.map(v => encodeFrame(v.header, v.body))
  for (let i = 0; i < n; i++) {
    const v = valid[rng.int(valid.length)]!
    switch (rng.int(5)) {
      case 0: yield randomBytes(rng, rng.int(512)); break
      case 1: yield mutateBytes(rng, encoded[rng.int(encoded.length)]!); break
      case 2: case 3: yield encodeFrame(mutateDeep(rng, v.header), v.body); break
      default: yield encodeFrame(v.header, v.body !== undefined && rng.int(2) === 0 ? mutateBytes(rng, v.body) : v.body)
    }
  }
}

/** Nothing escaped, every input accounted for, only the listed names, at least `min` of each. */
function expectTally (t: Tally, allowed: string[], min: Record<string, number>): void {
  if (process.env.FUZZ_DEBUG !== undefined) console.log(JSON.stringify({ accepted: t.accepted, rejected: Object.fromEntries(t.rejected) }))
  expect({ escaped: t.escaped.length, first: t.escaped.slice(0, 5) }).toEqual({ escaped: 0, first: [] })
  expect(t.inputs).toBe(N)
  expect(total(t)).toBe(N)
  expect([...t.rejected.keys()].filter(name => !allowed.includes(name))).toEqual([])
  for (const [name, count] of Object.entries(min)) expect([name, t.rejected.get(name) ?? 0, (t.rejected.get(name) ?? 0) >= count]).toEqual([name, expect.any(Number), true])
  expect(t.accepted).toBeGreaterThan(0)
}

describe('fuzzing the experts-announce decoders', () => {
  const limits = { maxFrameBytes: EXPERTS_ANNOUNCE_MAX_FRAME_BYTES }
  const rng0 = createSeededRandom('fuzz/experts-announce/samples')
  const signed = (version: number): unknown => ({
    revocation: { siteId: PEER, expertId: `digits-${version}`, upToVersion: version, reason: 'retrained', createdAt: 1_700_000_000_000 + version },
    signature: Buffer.from(randomBytes(rng0, 64)).toString('base64')
  })
  const inventory = {
    artifacts: [{ hash: H, size: 4096 }, { hash: 'cd'.repeat(32), size: 1 }, { hash: '01'.repeat(32), size: 1 << 20 }],
    revocations: [signed(1), signed(3)]
  }
  const inventoryBody = new TextEncoder().encode(JSON.stringify(inventory))

  it(`announce requests (announce, revoke, list): ${N} frames`, () => {
    const rng = createSeededRandom('fuzz/experts-announce/request')
    const valid: Sample[] = [{ header: { kind: 'announce', hash: H, size: 2048 } }, { header: { kind: 'revoke', signed: signed(2) } }, { header: { kind: 'list' } }]
    const before = memory()
    const t = run(bytes => decodeFrame(bytes, AnnounceRequest, limits), frameInputs(rng, valid, N))
    expectTally(t, FRAME_ERRORS, { FrameHeaderError: N / 5, FrameDecodeError: 1, FrameTooLargeError: 1 })
    expect(memory() - before).toBeLessThan(MEMORY_BOUND)
  })

  it(`announce responses (ack, inventory header + body): ${N} frames, inventories decoded as the joining member does`, () => {
    const rng = createSeededRandom('fuzz/experts-announce/response')
    const valid: Sample[] = [
      { header: { kind: 'ack', status: 'queued' } }, { header: { kind: 'ack', status: 'rejected', reason: 'not a member' } },
      { header: { kind: 'inventory', bytes: inventoryBody.byteLength }, body: inventoryBody }
    ]
    const before = memory()
    const t = run((bytes) => {
      const f = decodeFrame(bytes, AnnounceResponse, limits)
      return f.header.kind === 'inventory' ? decodeInventory(f.header, f.body) : f.header
    }, frameInputs(rng, valid, N))
    expectTally(t, FRAME_ERRORS, { FrameHeaderError: N / 5, FrameDecodeError: N / 50, FrameTooLargeError: 1 })
    expect(memory() - before).toBeLessThan(MEMORY_BOUND)
  })

  it(`inventory bodies (artifacts and signed revocation records): ${N} bodies`, () => {
    const rng = createSeededRandom('fuzz/experts-announce/inventory')
    const enc = new TextEncoder()
    function * inputs (): Generator<[number, Uint8Array]> {
      for (let i = 0; i < N; i++) {
        let body: Uint8Array
        switch (rng.int(4)) {
          case 0: body = randomBytes(rng, rng.int(400)); break
          case 1: body = mutateBytes(rng, inventoryBody); break
          default: body = enc.encode(JSON.stringify(mutateDeep(rng, inventory)) ?? 'undefined')
        }
        // Mostly the size the header would announce; sometimes a lie.
        yield [rng.int(8) === 0 ? body.byteLength + rng.int(3) - 1 : body.byteLength, body]
      }
    }
    const before = memory()
    const t = run(([bytes, body]) => decodeInventory({ kind: 'inventory', bytes }, body), inputs())
    expectTally(t, ['FrameDecodeError'], { FrameDecodeError: N / 2 })
    expect(decodeInventory({ kind: 'inventory', bytes: inventoryBody.byteLength }, inventoryBody)).toEqual(inventory)
    expect(memory() - before).toBeLessThan(MEMORY_BOUND)
  })
})

describe('fuzzing the secagg decoders (every stage, both directions)', () => {
  const limits = { maxFrameBytes: SECAGG_MAX_FRAME_BYTES }
  const rng0 = createSeededRandom('fuzz/secagg/samples')
  const b = (n: number): Uint8Array => randomBytes(rng0, n)
  const ids = ['site-a', 'site-b', 'site-c']
  const roundId = 'round-4/coordinator-x'
  const adv = (siteId: string): object => ({ type: 'secagg/advertise', roundId, siteId, encPk: b(KEY_BYTES), maskPk: b(KEY_BYTES), selfCommit: b(32), signature: b(64) })
  const params = { n: 3, threshold: 2, vectorLength: 8, ringBits: 32, scale: 1024, clipNorm: 1, baseHash: H }
  const requestMessages: Record<SecAggStage, unknown> = {
    advertise: undefined,
    'share-keys': { type: 'secagg/roster', roundId, advertisements: ids.map(adv) },
    'masked-input': { type: 'secagg/delivery', roundId, to: 'site-a', senders: ids, boxes: [{ from: 'site-b', box: b(BOX_BYTES) }, { from: 'site-c', box: b(BOX_BYTES) }] },
    consistency: { type: 'secagg/survivors', roundId, survivors: ids },
    unmask: { type: 'secagg/unmask-request', roundId, survivors: ids.slice(0, 2), signatures: ids.slice(0, 2).map(siteId => ({ siteId, signature: b(64) })) }
  }
  const replyMessages: Record<SecAggStage, unknown> = {
    advertise: adv('site-a'),
    'share-keys': { type: 'secagg/shares', roundId, from: 'site-a', boxes: [{ to: 'site-b', box: b(BOX_BYTES) }, { to: 'site-c', box: b(BOX_BYTES) }] },
    'masked-input': { type: 'secagg/masked', roundId, from: 'site-a' },
    consistency: { type: 'secagg/consistency', roundId, from: 'site-a', signature: b(64) },
    unmask: { type: 'secagg/unmask', roundId, from: 'site-a', maskKeyShares: [{ of: 'site-c', share: b(SHARE_BYTES) }], selfSeedShares: ids.slice(0, 2).map(of => ({ of, share: b(SHARE_BYTES) })) }
  }
  const STAGES = Object.keys(requestMessages) as SecAggStage[]
  const REQUEST_SCHEMAS: Record<SecAggStage, z.ZodType | undefined> = { advertise: undefined, 'share-keys': RosterSchema, 'masked-input': DeliverySchema, consistency: SurvivorsSchema, unmask: UnmaskRequestSchema }
  const REPLY_SCHEMAS: Record<SecAggStage, z.ZodType> = { advertise: AdvertiseSchema, 'share-keys': SharesSchema, 'masked-input': MaskedInputSchema, consistency: ConsistencySchema, unmask: UnmaskSchema }

  /** What a member does with a request: frame, binary fields, then the stage's schema (the client parses it first thing). */
  const decodeRequest = (bytes: Uint8Array, reached: (s: SecAggStage) => void): unknown => {
    const { header } = decodeFrame(bytes, SecAggRequest, limits)
    const message = fromWire(header.message)
    reached(header.stage)
    const schema = REQUEST_SCHEMAS[header.stage]
    return schema === undefined ? header.params : parseMessage(schema, message, header.stage)
  }
  /** What the coordinator does with a reply; a masked input's values travel as the body and join the message as a Uint32Array. */
  const decodeReply = (bytes: Uint8Array, reached: (s: SecAggStage) => void): unknown => {
    const { header, body } = decodeFrame(bytes, SecAggReply, limits)
    const message = fromWire(header.message)
    reached(header.stage)
    const full = header.stage === 'masked-input' ? { ...(message as object), masked: new Uint32Array(Math.floor((body?.byteLength ?? 0) / 4)) } : message
    return parseMessage(REPLY_SCHEMAS[header.stage], full, header.stage)
  }

  const cases: Array<[string, typeof decodeRequest, Sample[]]> = [
    ['requests', decodeRequest, STAGES.map(stage => ({
      header: { kind: 'secagg', stage, round: 4, roundId, ...(stage === 'advertise' ? { params } : { message: toWire(requestMessages[stage]) }) }
    }))],
    ['replies', decodeReply, STAGES.map(stage => ({
      header: { kind: 'secagg-reply', stage, message: toWire(replyMessages[stage]), ...(stage === 'masked-input' ? { samples: 12 } : {}) },
      ...(stage === 'masked-input' ? { body: b(4 * params.vectorLength) } : {})
    }))]
  ]

  for (const [name, decode, valid] of cases) {
    it(`${name}: ${N} frames; each stage's message reaches its schema, valid ones pass, damaged ones are refused by name`, () => {
      const rng = createSeededRandom(`fuzz/secagg/${name}`)
      const perStage = new Map<SecAggStage, { accepted: number, refused: number }>(STAGES.map(s => [s, { accepted: 0, refused: 0 }]))
      const before = memory()
      const t = run((bytes) => {
        let stage: SecAggStage | undefined
        try {
          const out = decode(bytes, (s) => { stage = s })
          if (stage !== undefined) perStage.get(stage)!.accepted++
          return out
        } catch (err) {
          if (stage !== undefined && (err as Error).name === 'SecAggProtocolError') perStage.get(stage)!.refused++
          throw err
        }
      }, frameInputs(rng, valid, N))
      expectTally(t, [...FRAME_ERRORS, 'SecAggProtocolError'], { FrameHeaderError: N / 10, FrameDecodeError: 1, FrameTooLargeError: 1, SecAggProtocolError: N / 20 })
      for (const stage of STAGES) {
        expect([stage, perStage.get(stage)!.accepted > 0]).toEqual([stage, true])
        // advertise requests carry parameters, not a message: nothing for a schema to refuse.
        if (name === 'replies' || stage !== 'advertise') expect([stage, perStage.get(stage)!.refused > 0]).toEqual([stage, true])
      }
      expect(memory() - before).toBeLessThan(MEMORY_BOUND)
    })
  }
})

describe('fuzzing the routing release decoders (JSON form)', () => {
  const rng0 = createSeededRandom('fuzz/routing/samples')
  const moments = (dim: number): { dim: number, count: number, sum: Float64Array, outer: Float64Array } => ({
    dim, count: 40 + rng0.int(100), sum: Float64Array.from({ length: dim }, () => rng0.normal()), outer: Float64Array.from({ length: dim * (dim + 1) / 2 }, () => rng0.normal())
  })
  const release: SiteRelease = { expert: 1, components: [0, 1, 2].map(i => ({ label: i >> 1, cell: i & 1, moments: moments(3) })) }
  const releaseWire = JSON.parse(JSON.stringify(encodeSiteRelease(release))) as unknown
  const globalWire = JSON.parse(JSON.stringify(encodeGlobalMoments(moments(4)))) as unknown

  /** Damaged valid values (mostly), hostile scalars, damaged JSON text, and claims of huge sizes. */
  function * valueInputs (rng: Random, valid: unknown): Generator<unknown> {
    const text = new TextEncoder().encode(JSON.stringify(valid))
    for (let i = 0; i < N; i++) {
      switch (rng.int(8)) {
        case 0: yield WEIRD[rng.int(WEIRD.length)]; break
        case 1: {
          const s = new TextDecoder().decode(mutateBytes(rng, text))
          try { yield JSON.parse(s) } catch { yield s }
          break
        }
        case 2: yield { ...(valid as object), components: Array.from({ length: 1025 + rng.int(3) }, () => 0), sum: Array.from({ length: 5000 }, () => 0) }; break
        case 3: yield valid
          break
        default: yield mutateDeep(rng, valid)
      }
    }
  }

  const cases: Array<[string, (input: unknown) => unknown, unknown, string]> = [
    ['decodeSiteRelease (release 2)', input => decodeSiteRelease(input), releaseWire, 'RoutingInputError'],
    ['decodeGlobalMoments (release 1)', input => decodeGlobalMoments(input), globalWire, 'FederationError']
  ]
  for (const [name, decode, valid, errorName] of cases) {
    it(`${name}: ${N} values, each refused with ${errorName} or decoded to finite, consistent moments`, () => {
      const rng = createSeededRandom(`fuzz/routing/${name}`)
      const before = memory()
      const t = run((input) => {
        const out = decode(input) as SiteRelease | { dim: number, count: number, sum: Float64Array, outer: Float64Array }
        // Accepted means usable: every moments block has the promised lengths and finite values.
        for (const m of 'components' in out ? out.components.map(c => c.moments) : [out]) {
          if (m.sum.length !== m.dim || m.outer.length !== m.dim * (m.dim + 1) / 2 || ![m.count, ...m.sum, ...m.outer].every(Number.isFinite)) throw new Error(`accepted inconsistent moments of dim ${m.dim}`)
        }
        return out
      }, valueInputs(rng, valid))
      expectTally(t, [errorName], { [errorName]: N / 2 })
      expect(memory() - before).toBeLessThan(MEMORY_BOUND)
    })
  }
})
