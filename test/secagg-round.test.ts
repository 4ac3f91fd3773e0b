import { generateKeyPairSync, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { createSecAggClient } from '../coordinator/secagg/client.ts'
import { createSecAggServer } from '../coordinator/secagg/server.ts'
import { SECAGG_STAGES, runLocalSecAggRound, type LocalMember, type SecAggStage } from '../coordinator/secagg/local.ts'
import { dequantise, quantise, reduceToRing, ringSum, type RingBits } from '../coordinator/secagg/quantise.ts'
import type { Verify } from '../coordinator/secagg/common.ts'
import { messageBytes } from '../coordinator/secagg/messages.ts'

// Real Ed25519 site identities, as the node layer will plug in.
const identities = new Map<string, { priv: KeyObject, pub: KeyObject }>()
function identity (id: string): { priv: KeyObject, pub: KeyObject } {
  let k = identities.get(id)
  if (k === undefined) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    k = { priv: privateKey, pub: publicKey }
    identities.set(id, k)
  }
  return k
}
const signer = (id: string) => (b: Uint8Array): Uint8Array => new Uint8Array(edSign(null, b, identity(id).priv))
const verify: Verify = (id, b, sig) => identities.has(id) && edVerify(null, b, identity(id).pub, sig)

const clipNorm = 2
const scale = 2 ** 16

function members (n: number, length: number, seed: number): LocalMember[] {
  const r = createSeededRandom(seed)
  return Array.from({ length: n }, (_, i) => {
    const siteId = `site-${String.fromCharCode(97 + i)}`
    // Some updates longer than the clip norm, some shorter.
    const update = Float32Array.from({ length }, () => r.normal() * (i % 2 === 0 ? 1 : 0.05))
    return { siteId, update, sign: signer(siteId) }
  })
}

function plaintextSum (ms: LocalMember[], ids: string[], bits: RingBits): Uint32Array {
  const qs = ms.filter(m => ids.includes(m.siteId)).map(m => quantise(m.update as Float32Array, { clipNorm, scale }))
  return ringSum(qs, qs[0]!.length, bits)
}

describe('secure aggregation round (n = 5, t = 3)', () => {
  const n = 5
  const t = 3
  const length = 257
  const ms = members(n, length, 11)
  const ids = ms.map(m => m.siteId)

  for (const stage of SECAGG_STAGES) {
    for (let d = 0; d <= n - t; d++) {
      it(`${d} dropout(s) before ${stage}: the unmasked sum equals the plaintext quantised sum, integer for integer`, () => {
        const dropped = ids.slice(n - d)
        const { result } = runLocalSecAggRound({ roundId: `fed/${stage}/${d}`, n, threshold: t, vectorLength: length, clipNorm, scale, members: ms, dropBefore: { [stage]: dropped } }, { random: createSeededRandom(d), verify })
        // Members that dropped before sending their masked input are not in the sum; later dropouts are.
        const inputSent = SECAGG_STAGES.indexOf(stage) > SECAGG_STAGES.indexOf('maskedInput')
        const expected = inputSent ? ids : ids.filter(id => !dropped.includes(id))
        expect(result.contributors.sort()).toEqual(expected)
        expect([...result.sum]).toEqual([...plaintextSum(ms, expected, 32)])
        expect(result.recovered).toEqual(stage === 'maskedInput' ? dropped : [])
      })
    }
    it(`${n - t + 1} dropouts before ${stage}: the round aborts with a named error and releases no sum`, () => {
      expect(() => runLocalSecAggRound({ roundId: `fed/${stage}/abort`, n, threshold: t, vectorLength: length, clipNorm, scale, members: ms, dropBefore: { [stage]: ids.slice(t - 1) } }, { random: createSeededRandom(1), verify }))
        .toThrow(expect.objectContaining({ name: 'SecAggAbortedError', message: expect.stringContaining('nothing unmasked is released') }))
    })
  }

  it('dropouts spread over several stages (n - t in total) still give the exact sum', () => {
    const dropBefore: Partial<Record<SecAggStage, string[]>> = { shareKeys: ['site-b'], unmask: ['site-d'] }
    const { result } = runLocalSecAggRound({ roundId: 'fed/spread', n, threshold: t, vectorLength: length, clipNorm, scale, members: ms, dropBefore }, { random: createSeededRandom(5), verify })
    const expected = ids.filter(id => id !== 'site-b')
    expect(result.contributors.sort()).toEqual(expected)
    expect([...result.sum]).toEqual([...plaintextSum(ms, expected, 32)])
  })

  it('decodes to the float sum of the clipped updates within n / (2 scale) per coordinate', () => {
    const { result } = runLocalSecAggRound({ roundId: 'fed/decode', n, threshold: t, vectorLength: length, clipNorm, scale, members: ms }, { random: createSeededRandom(2), verify })
    const got = dequantise(result.sum, scale)
    const want = new Float64Array(length)
    for (const m of ms) {
      const u = m.update as Float32Array
      let norm = 0
      for (const v of u) norm += v * v
      const f = Math.min(1, clipNorm / Math.sqrt(norm))
      for (let i = 0; i < length; i++) want[i]! += Math.fround(u[i]! * f)
    }
    for (let i = 0; i < length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(n / (2 * scale) + 1e-6)
  })
})

describe('secure aggregation round (n = 10, t = 6, Z_2^16)', () => {
  it('recovers 4 dropouts and sums exactly in the 16-bit ring', () => {
    const n = 10
    const ms = members(n, 300, 21)
    const scale16 = 1000 // 10 * (2 * 1000 + 1) < 2^15
    const ids = ms.map(m => m.siteId)
    const { result } = runLocalSecAggRound({ roundId: 'fed/16', n, threshold: 6, vectorLength: 300, ringBits: 16, clipNorm, scale: scale16, members: ms, dropBefore: { maskedInput: ids.slice(0, 2), unmask: ids.slice(2, 4) } }, { random: createSeededRandom(3), verify })
    const expected = ids.slice(2)
    const qs = ms.filter(m => expected.includes(m.siteId)).map(m => quantise(m.update as Float32Array, { clipNorm, scale: scale16 }))
    expect([...result.sum]).toEqual([...ringSum(qs, 300, 16)])
    expect(result.sum.every(v => v <= 0xffff)).toBe(true)
    // The masked input is 2 bytes a value on the wire instead of 4.
    const masked = { type: 'secagg/masked' as const, roundId: 'r', from: 'site-e', masked: result.sum }
    expect(messageBytes(masked, 32) - messageBytes(masked, 16)).toBe(600)
  })
})

describe('what members refuse', () => {
  const n = 4
  const t = 3
  const roundId = 'fed/adversary'
  const setup = () => {
    const ms = members(n, 8, 31)
    const clients = ms.map(m => createSecAggClient({ roundId, n, threshold: t, vectorLength: 8, siteId: m.siteId, clipNorm, scale }, { random: createSeededRandom(m.siteId), sign: m.sign, verify }))
    const server = createSecAggServer({ roundId, n, threshold: t, vectorLength: 8 }, { verify })
    for (const c of clients) server.receiveAdvertisement(c.advertise())
    return { ms, clients, server, roster: server.closeAdvertise() }
  }

  it('a coordinator that swaps in its own mask key for a member is caught by the signature', () => {
    const { clients, roster } = setup()
    const forged = structuredClone(roster)
    forged.advertisements[1]!.maskPk = new Uint8Array(32).fill(9)
    expect(() => clients[0]!.shareKeys(forged)).toThrow(expect.objectContaining({ name: 'SecAggProtocolError', message: expect.stringContaining('bad signature') }))
  })

  it('a share box altered in transit is detected by the receiver', () => {
    const { clients, server, roster } = setup()
    for (const c of clients) server.receiveShares(c.shareKeys(roster))
    const deliveries = server.closeShares()
    const d = structuredClone(deliveries[0]!)
    d.boxes[0]!.box[3]! ^= 0x40
    expect(() => clients.find(c => c.siteId === d.to)!.maskedInput(d, new Float32Array(8))).toThrow(expect.objectContaining({ name: 'ShareTamperedError', message: expect.stringContaining('altered in transit') }))
  })

  it('a member refuses to unmask when the survivor list leaves it out, or when members saw different lists', () => {
    const { clients, server, roster } = setup()
    for (const c of clients) server.receiveShares(c.shareKeys(roster))
    const deliveries = server.closeShares()
    for (const c of clients) server.receiveMaskedInput(c.maskedInput(deliveries.find(d => d.to === c.siteId), new Float32Array(8).fill(0.1)))
    const survivors = server.closeMaskedInput()
    // A server that tells site-a it dropped, to learn site-a's mask key next to its input:
    const lie = { ...survivors, survivors: survivors.survivors.filter(s => s !== 'site-a') }
    expect(() => clients[0]!.consistency(lie)).toThrow(expect.objectContaining({ name: 'SecAggProtocolError', message: expect.stringContaining('not listed among the survivors') }))
    // Others sign the lie; site-b signed the true list: its signature cannot be passed off for the lie.
    const sigs = clients.slice(2).map(c => c.consistency(lie))
    const honest = clients[1]!.consistency(survivors)
    const request = { type: 'secagg/unmask-request' as const, roundId, survivors: lie.survivors, signatures: [...sigs, honest].map(s => ({ siteId: s.from, signature: s.signature })) }
    expect(() => clients[2]!.unmask(request)).toThrow(expect.objectContaining({ name: 'SecAggProtocolError', message: expect.stringContaining('different survivor sets') }))
  })

  it('a member refuses to unmask when fewer than t signed the survivor list', () => {
    const { clients, server, roster } = setup()
    for (const c of clients) server.receiveShares(c.shareKeys(roster))
    const deliveries = server.closeShares()
    for (const c of clients) server.receiveMaskedInput(c.maskedInput(deliveries.find(d => d.to === c.siteId), new Float32Array(8)))
    const survivors = server.closeMaskedInput()
    const sigs = clients.map(c => c.consistency(survivors))
    const request = { type: 'secagg/unmask-request' as const, roundId, survivors: survivors.survivors, signatures: sigs.slice(0, t - 1).map(s => ({ siteId: s.from, signature: s.signature })) }
    expect(() => clients[0]!.unmask(request)).toThrow(expect.objectContaining({ name: 'SecAggAbortedError' }))
  })

  it('the server rejects malformed and out-of-order messages with named errors', () => {
    const { server, clients } = setup()
    expect(() => server.receiveMaskedInput({ type: 'secagg/masked', roundId, from: 'site-a', masked: new Uint32Array(8) })).toThrow(expect.objectContaining({ name: 'SecAggProtocolError', message: expect.stringContaining('at shares') }))
    expect(() => server.receiveShares({ type: 'secagg/shares', roundId, from: 'site-a', boxes: [{ to: 'site-b', box: new Uint8Array(3) }] })).toThrow(expect.objectContaining({ name: 'SecAggProtocolError', message: expect.stringContaining('boxes.0.box') }))
    expect(() => server.receiveShares({ type: 'secagg/shares', roundId: 'other', from: 'site-a', boxes: [] })).toThrow(expect.objectContaining({ name: 'SecAggProtocolError', message: expect.stringContaining("round 'other'") }))
    expect(() => clients[0]!.unmask({})).toThrow(expect.objectContaining({ name: 'SecAggProtocolError', message: expect.stringContaining('unmask called while the client is at shareKeys') }))
  })

  it('rejects a threshold at or below n/2 and a scale that would overflow the ring', () => {
    expect(() => createSecAggServer({ roundId, n: 4, threshold: 2, vectorLength: 8 }, { verify })).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('n/2 < threshold') }))
    expect(() => createSecAggClient({ roundId, n: 10, threshold: 6, vectorLength: 8, siteId: 'a', clipNorm: 1, scale: 2 ** 28 }, { random: createSeededRandom(1), sign: signer('a'), verify }))
      .toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('overflows Z_2^32') }))
  })

  it('a masked input on its own looks nothing like the update', () => {
    const { clients, server, roster } = setup()
    for (const c of clients) server.receiveShares(c.shareKeys(roster))
    const deliveries = server.closeShares()
    const q = reduceToRing(quantise(new Float32Array(8).fill(0.5), { clipNorm, scale }), 32)
    const m = clients[0]!.maskedQuantisedInput(deliveries.find(d => d.to === 'site-a'), q)
    let same = 0
    for (let i = 0; i < 8; i++) if (m.masked[i] === q[i]) same++
    expect(same).toBe(0)
  })
})
