/**
 * One member's side of a secure-aggregation round. Pure: every secret is
 * expanded from 32 seed bytes (init.seed, which a real site takes from
 * crypto.randomBytes; or, in a simulation, drawn from the injected Random).
 * Methods must be called in stage order; each returns the message to send.
 * The client refuses to reveal anything that would unmask an individual
 * input: it checks signatures on the roster and on the survivor list, that
 * it is itself counted among the survivors, and that every stage kept at
 * least `threshold` members.
 */
import type { Random } from '../components.ts'
import { SecAggProtocolError, ShareTamperedError } from '../errors.ts'
import { aeadOpen, aeadSeal, bytesEqual, x25519PublicKey } from './primitives.ts'
import { addMaskInto, createByteSource, seedFromRandom } from './prg.ts'
import { quantise, reduceToRing, type RingBits } from './quantise.ts'
import { SHARE_BYTES, shareFromBytes, shareToBytes, splitSecret, type Share } from './shamir.ts'
import {
  BOX_NONCE, advertisePayload, boxAad, boxKey, checkParams, checkQuantisationFor, checkRound, compareIds, consistencyPayload,
  pairMask, parseMessage, requireQuorum, roundContext, selfCommitment, selfMask, shamirIndex, uniqueIds,
  type SecAggParams, type Sign, type Verify
} from './common.ts'
import {
  DeliverySchema, RosterSchema, SiteIdSchema, SurvivorsSchema, UnmaskRequestSchema,
  type AdvertiseMessage, type ConsistencyMessage, type MaskedInputMessage, type SharesMessage, type UnmaskMessage
} from './messages.ts'

export interface SecAggClientInit extends SecAggParams {
  siteId: string
  /** Updates are clipped to this L2 norm before quantisation. */
  clipNorm: number
  /** Fixed-point scale: x becomes round(x * scale). */
  scale: number
  /** 32+ secret random bytes for this round. Without it, 32 bytes are drawn from components.random (simulation only). */
  seed?: Uint8Array
}

export interface SecAggClientComponents {
  random: Random
  sign: Sign
  verify: Verify
}

export interface SecAggClient {
  readonly siteId: string
  advertise: () => AdvertiseMessage
  shareKeys: (roster: unknown) => SharesMessage
  /** Clips and quantises `update`, then masks it. */
  maskedInput: (delivery: unknown, update: Float32Array) => MaskedInputMessage
  /** Masks an update that is already quantised (values of Z_2^32, two's complement). */
  maskedQuantisedInput: (delivery: unknown, quantised: Uint32Array) => MaskedInputMessage
  consistency: (survivors: unknown) => ConsistencyMessage
  unmask: (request: unknown) => UnmaskMessage
}

type Stage = 'advertise' | 'shareKeys' | 'maskedInput' | 'consistency' | 'unmask' | 'done'

interface Peer { encPk: Uint8Array, maskPk: Uint8Array, selfCommit: Uint8Array }

export function createSecAggClient (init: SecAggClientInit, components: SecAggClientComponents): SecAggClient {
  checkParams(init)
  SiteIdSchema.parse(init.siteId)
  checkQuantisationFor(init, init.clipNorm, init.scale)
  const { siteId, roundId, threshold, vectorLength } = init
  const ringBits: RingBits = init.ringBits ?? 32
  const context = roundContext(roundId)
  const bytes = createByteSource(init.seed ?? seedFromRandom(components.random), `client/${roundId}/${siteId}`)

  // Round secrets: two X25519 scalars and the self-mask seed b_u.
  const encSk = bytes(32)
  const maskSk = bytes(32)
  const selfSeed = bytes(32)

  let stage: Stage = 'advertise'
  const roster = new Map<string, Peer>()
  let index = new Map<string, number>()
  /** Shares this member holds of every other member's secrets (and its own). */
  const held = new Map<string, { maskKey: Share, selfSeed: Share }>()
  let u2: string[] = []
  let u3: string[] = []

  const enter = (expected: Stage, next: Stage): void => {
    if (stage !== expected) throw new SecAggProtocolError(`${siteId}: ${expected} called while the client is at ${stage}`)
    stage = next
  }

  const advertise = (): AdvertiseMessage => {
    enter('advertise', 'shareKeys')
    const body = { siteId, encPk: x25519PublicKey(encSk), maskPk: x25519PublicKey(maskSk), selfCommit: selfCommitment(context, selfSeed) }
    return { type: 'secagg/advertise', roundId, ...body, signature: components.sign(advertisePayload(context, body)) }
  }

  const shareKeys = (input: unknown): SharesMessage => {
    enter('shareKeys', 'maskedInput')
    const msg = parseMessage(RosterSchema, input, 'roster')
    checkRound(roundId, msg.roundId, 'roster')
    const ids = msg.advertisements.map(a => a.siteId)
    uniqueIds(ids, 'the roster')
    if (ids.length > init.n) throw new SecAggProtocolError(`the roster lists ${ids.length} members, the round has n = ${init.n}`)
    requireQuorum(ids.length, threshold, 'advertise')
    for (const a of msg.advertisements) {
      checkRound(roundId, a.roundId, 'advertise')
      // The signature binds each key to a site identity: a coordinator cannot substitute its own keys.
      if (!components.verify(a.siteId, advertisePayload(context, a), a.signature)) throw new SecAggProtocolError(`the advertised keys of ${a.siteId} carry a bad signature`)
      roster.set(a.siteId, { encPk: a.encPk, maskPk: a.maskPk, selfCommit: a.selfCommit })
    }
    const mine = roster.get(siteId)
    if (mine === undefined || !bytesEqual(mine.maskPk, x25519PublicKey(maskSk))) throw new SecAggProtocolError(`the roster does not carry ${siteId}'s own keys`)
    index = shamirIndex(ids)
    const params = { n: ids.length, threshold }
    const maskShares = splitSecret(maskSk, params, bytes)
    const seedShares = splitSecret(selfSeed, params, bytes)
    const boxes: SharesMessage['boxes'] = []
    for (const [peer, keys] of roster) {
      const x = index.get(peer)!
      const pair = { maskKey: maskShares[x - 1]!, selfSeed: seedShares[x - 1]! }
      if (peer === siteId) { held.set(siteId, pair); continue }
      const plain = new Uint8Array(2 * SHARE_BYTES)
      plain.set(shareToBytes(pair.maskKey), 0)
      plain.set(shareToBytes(pair.selfSeed), SHARE_BYTES)
      const box = aeadSeal(boxKey(context, encSk, keys.encPk, siteId, peer), BOX_NONCE, plain, boxAad(context, siteId, peer))
      boxes.push({ to: peer, box })
    }
    return { type: 'secagg/shares', roundId, from: siteId, boxes }
  }

  const receiveDelivery = (input: unknown): void => {
    const msg = parseMessage(DeliverySchema, input, 'delivery')
    checkRound(roundId, msg.roundId, 'delivery')
    if (msg.to !== siteId) throw new SecAggProtocolError(`a delivery for ${msg.to} reached ${siteId}`)
    uniqueIds(msg.senders, 'the share senders')
    for (const s of msg.senders) if (!roster.has(s)) throw new SecAggProtocolError(`share sender ${s} was not on the roster`)
    if (!msg.senders.includes(siteId)) throw new SecAggProtocolError(`${siteId} sent its shares but is not listed among the senders`)
    requireQuorum(msg.senders.length, threshold, 'share keys')
    const boxes = new Map(msg.boxes.map(b => [b.from, b.box]))
    for (const from of msg.senders) {
      if (from === siteId) continue
      const box = boxes.get(from)
      if (box === undefined) throw new SecAggProtocolError(`no share box from ${from} although it is listed as a sender`)
      let plain: Uint8Array
      try {
        plain = aeadOpen(boxKey(context, encSk, roster.get(from)!.encPk, from, siteId), BOX_NONCE, box, boxAad(context, from, siteId))
      } catch (err) {
        throw new ShareTamperedError(`the share box from ${from} to ${siteId} fails authentication: it was altered in transit`, { cause: err })
      }
      const x = index.get(siteId)!
      held.set(from, { maskKey: shareFromBytes(x, plain.subarray(0, SHARE_BYTES)), selfSeed: shareFromBytes(x, plain.subarray(SHARE_BYTES)) })
    }
    u2 = [...msg.senders]
  }

  const mask = (delivery: unknown, q: Uint32Array): MaskedInputMessage => {
    enter('maskedInput', 'consistency')
    receiveDelivery(delivery)
    if (q.length !== vectorLength) throw new SecAggProtocolError(`update has ${q.length} values, the round aggregates ${vectorLength}`)
    const y = new Uint32Array(q)
    addMaskInto(y, selfMask(context, siteId, selfSeed, vectorLength), 1)
    for (const peer of u2) {
      if (peer === siteId) continue
      const { mask: m, sign } = pairMask(context, siteId, maskSk, peer, roster.get(peer)!.maskPk, vectorLength)
      addMaskInto(y, m, sign)
    }
    return { type: 'secagg/masked', roundId, from: siteId, masked: reduceToRing(y, ringBits) }
  }

  const consistency = (input: unknown): ConsistencyMessage => {
    enter('consistency', 'unmask')
    const msg = parseMessage(SurvivorsSchema, input, 'survivors')
    checkRound(roundId, msg.roundId, 'survivors')
    checkSurvivors(msg.survivors)
    u3 = [...msg.survivors]
    return { type: 'secagg/consistency', roundId, from: siteId, signature: components.sign(consistencyPayload(context, u3)) }
  }

  const checkSurvivors = (survivors: readonly string[]): void => {
    uniqueIds(survivors, 'the survivor list')
    for (const s of survivors) if (!u2.includes(s)) throw new SecAggProtocolError(`survivor ${s} never sent its shares`)
    // This member did send its masked input; a list without it would make
    // this member reveal shares of its own mask key next to its input.
    if (!survivors.includes(siteId)) throw new SecAggProtocolError(`${siteId} sent its masked input but is not listed among the survivors`)
    requireQuorum(survivors.length, threshold, 'masked input')
  }

  const unmask = (input: unknown): UnmaskMessage => {
    enter('unmask', 'done')
    const msg = parseMessage(UnmaskRequestSchema, input, 'unmask request')
    checkRound(roundId, msg.roundId, 'unmask request')
    // Everyone must have been told the same U3: check it against what this member signed.
    if (msg.survivors.length !== u3.length || [...msg.survivors].sort(compareIds).join('\n') !== [...u3].sort(compareIds).join('\n')) {
      throw new SecAggProtocolError('the unmask request names a different survivor set from the one this member signed')
    }
    const payload = consistencyPayload(context, u3)
    const signers = new Set<string>()
    for (const { siteId: who, signature } of msg.signatures) {
      if (!u3.includes(who)) throw new SecAggProtocolError(`consistency signature from ${who}, which is not a survivor`)
      if (!components.verify(who, payload, signature)) throw new SecAggProtocolError(`the consistency signature of ${who} is bad: members were shown different survivor sets`)
      signers.add(who)
    }
    requireQuorum(signers.size, threshold, 'consistency check')
    const dropped = u2.filter(v => !u3.includes(v))
    return {
      type: 'secagg/unmask',
      roundId,
      from: siteId,
      maskKeyShares: dropped.map(v => ({ of: v, share: shareToBytes(held.get(v)!.maskKey) })),
      selfSeedShares: u3.map(v => ({ of: v, share: shareToBytes(held.get(v)!.selfSeed) }))
    }
  }

  return {
    siteId,
    advertise,
    shareKeys,
    maskedInput: (delivery, update) => mask(delivery, quantise(update, { clipNorm: init.clipNorm, scale: init.scale, ringBits })),
    maskedQuantisedInput: (delivery, q) => mask(delivery, q),
    consistency,
    unmask
  }
}

