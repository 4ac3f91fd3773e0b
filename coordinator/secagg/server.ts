/**
 * The coordinator's side of a secure-aggregation round. It relays messages,
 * decides who is still present at the end of each stage (the node layer
 * calls close*() when every member answered or the stage deadline passed),
 * and in the end removes the masks from the sum. It never holds an
 * individual unmasked input: the self mask of every survivor stays on until
 * the sum is formed, and a survivor's mask key is never reconstructed.
 *
 * Fewer than `threshold` members at any stage aborts the round with
 * SecAggAbortedError; after that every call throws and no sum exists.
 */
import { SecAggAbortedError, SecAggProtocolError } from '../errors.ts'
import { x25519PublicKey, bytesEqual } from './primitives.ts'
import { addMaskInto } from './prg.ts'
import { reduceToRing, type RingBits } from './quantise.ts'
import { reconstructSecret, shareFromBytes, type Share } from './shamir.ts'
import {
  advertisePayload, checkParams, checkRound, checkSelfCommitment, consistencyPayload, pairMask, parseMessage,
  requireQuorum, roundContext, selfMask, shamirIndex, type SecAggParams, type Verify
} from './common.ts'
import {
  AdvertiseSchema, ConsistencySchema, MaskedInputSchema, SharesSchema, UnmaskSchema,
  type AdvertiseMessage, type DeliveryMessage, type RosterMessage, type SharesMessage, type SurvivorsMessage, type UnmaskRequestMessage
} from './messages.ts'

export interface SecAggServerComponents {
  verify: Verify
}

export interface SecAggResult {
  /** Sum of the survivors' quantised inputs, in Z_2^k. Decode with dequantise(sum, scale, ringBits). */
  sum: Uint32Array
  /** U3: whose inputs the sum holds. */
  contributors: string[]
  /** U2 \ U3: members whose pairwise masks were recovered and removed. */
  recovered: string[]
}

export interface SecAggServer {
  readonly stage: string
  receiveAdvertisement: (msg: unknown) => void
  closeAdvertise: () => RosterMessage
  receiveShares: (msg: unknown) => void
  closeShares: () => DeliveryMessage[]
  receiveMaskedInput: (msg: unknown) => void
  closeMaskedInput: () => SurvivorsMessage
  receiveConsistency: (msg: unknown) => void
  closeConsistency: () => UnmaskRequestMessage
  receiveUnmask: (msg: unknown) => void
  finish: () => SecAggResult
}

type Stage = 'advertise' | 'shares' | 'masked' | 'consistency' | 'unmask' | 'done' | 'aborted'

export function createSecAggServer (params: SecAggParams, components: SecAggServerComponents): SecAggServer {
  checkParams(params)
  const { roundId, threshold, vectorLength } = params
  const ringBits: RingBits = params.ringBits ?? 32
  const context = roundContext(roundId)
  let stage: Stage = 'advertise'
  let abortReason = ''

  const adverts = new Map<string, AdvertiseMessage>()
  const shares = new Map<string, SharesMessage>()
  const masked = new Map<string, Uint32Array>()
  const signatures = new Map<string, Uint8Array>()
  const unmasks = new Map<string, { maskKey: Map<string, Uint8Array>, selfSeed: Map<string, Uint8Array> }>()
  let u1: string[] = []
  let u2: string[] = []
  let u3: string[] = []

  const at = (expected: Stage, call: string): void => {
    if (stage === 'aborted') throw new SecAggAbortedError(`round ${roundId} was aborted (${abortReason}); ${call} refused`)
    if (stage !== expected) throw new SecAggProtocolError(`${call} called while the round is at ${stage}`)
  }
  /** Checks the quorum; a shortfall aborts the round for good. */
  const quorum = (count: number, name: string): void => {
    try {
      requireQuorum(count, threshold, name)
    } catch (err) {
      stage = 'aborted'
      abortReason = (err as Error).message
      masked.clear() // drop what can no longer be used
      throw err
    }
  }
  const member = (set: readonly string[], id: string, what: string): void => {
    if (!set.includes(id)) throw new SecAggProtocolError(`${what} from ${id}, which is not in the round at this stage`)
  }

  return {
    get stage () { return stage },

    receiveAdvertisement: (input) => {
      at('advertise', 'receiveAdvertisement')
      const m = parseMessage(AdvertiseSchema, input, 'advertise')
      checkRound(roundId, m.roundId, 'advertise')
      if (adverts.has(m.siteId)) throw new SecAggProtocolError(`${m.siteId} advertised twice`)
      if (adverts.size >= params.n) throw new SecAggProtocolError(`more than n = ${params.n} members advertised`)
      if (!components.verify(m.siteId, advertisePayload(context, m), m.signature)) throw new SecAggProtocolError(`the advertised keys of ${m.siteId} carry a bad signature`)
      adverts.set(m.siteId, m)
    },
    closeAdvertise: () => {
      at('advertise', 'closeAdvertise')
      quorum(adverts.size, 'advertise')
      u1 = [...adverts.keys()]
      stage = 'shares'
      return { type: 'secagg/roster', roundId, advertisements: [...adverts.values()] }
    },

    receiveShares: (input) => {
      at('shares', 'receiveShares')
      const m = parseMessage(SharesSchema, input, 'shares')
      checkRound(roundId, m.roundId, 'shares')
      member(u1, m.from, 'shares')
      if (shares.has(m.from)) throw new SecAggProtocolError(`${m.from} sent its shares twice`)
      const to = m.boxes.map(b => b.to)
      const expected = u1.filter(v => v !== m.from)
      if (to.length !== expected.length || !expected.every(v => to.includes(v))) throw new SecAggProtocolError(`${m.from} must send exactly one share box to each other member of the roster`)
      shares.set(m.from, m)
    },
    closeShares: () => {
      at('shares', 'closeShares')
      quorum(shares.size, 'share keys')
      u2 = [...shares.keys()]
      stage = 'masked'
      return u2.map(to => ({
        type: 'secagg/delivery' as const,
        roundId,
        to,
        senders: [...u2],
        boxes: u2.filter(from => from !== to).map(from => ({ from, box: shares.get(from)!.boxes.find(b => b.to === to)!.box }))
      }))
    },

    receiveMaskedInput: (input) => {
      at('masked', 'receiveMaskedInput')
      const m = parseMessage(MaskedInputSchema, input, 'masked input')
      checkRound(roundId, m.roundId, 'masked input')
      member(u2, m.from, 'masked input')
      if (masked.has(m.from)) throw new SecAggProtocolError(`${m.from} sent its masked input twice`)
      if (m.masked.length !== vectorLength) throw new SecAggProtocolError(`masked input of ${m.from} has ${m.masked.length} values, the round aggregates ${vectorLength}`)
      if (ringBits === 16 && m.masked.some(v => v > 0xffff)) throw new SecAggProtocolError(`masked input of ${m.from} has values outside Z_2^16`)
      masked.set(m.from, m.masked)
    },
    closeMaskedInput: () => {
      at('masked', 'closeMaskedInput')
      quorum(masked.size, 'masked input')
      u3 = [...masked.keys()]
      stage = 'consistency'
      return { type: 'secagg/survivors', roundId, survivors: [...u3] }
    },

    receiveConsistency: (input) => {
      at('consistency', 'receiveConsistency')
      const m = parseMessage(ConsistencySchema, input, 'consistency')
      checkRound(roundId, m.roundId, 'consistency')
      member(u3, m.from, 'consistency signature')
      if (!components.verify(m.from, consistencyPayload(context, u3), m.signature)) throw new SecAggProtocolError(`the consistency signature of ${m.from} does not cover this round's survivor set`)
      signatures.set(m.from, m.signature)
    },
    closeConsistency: () => {
      at('consistency', 'closeConsistency')
      quorum(signatures.size, 'consistency check')
      stage = 'unmask'
      return { type: 'secagg/unmask-request', roundId, survivors: [...u3], signatures: [...signatures].map(([siteId, signature]) => ({ siteId, signature })) }
    },

    receiveUnmask: (input) => {
      at('unmask', 'receiveUnmask')
      const m = parseMessage(UnmaskSchema, input, 'unmask')
      checkRound(roundId, m.roundId, 'unmask')
      member([...signatures.keys()], m.from, 'unmask shares')
      if (unmasks.has(m.from)) throw new SecAggProtocolError(`${m.from} sent its unmask shares twice`)
      const dropped = u2.filter(v => !u3.includes(v))
      const ofMask = m.maskKeyShares.map(s => s.of)
      const ofSeed = m.selfSeedShares.map(s => s.of)
      if (ofMask.length !== dropped.length || !dropped.every(v => ofMask.includes(v))) throw new SecAggProtocolError(`${m.from} must send one mask-key share for each dropped member`)
      if (ofSeed.length !== u3.length || !u3.every(v => ofSeed.includes(v))) throw new SecAggProtocolError(`${m.from} must send one self-seed share for each survivor`)
      unmasks.set(m.from, {
        maskKey: new Map(m.maskKeyShares.map(s => [s.of, s.share])),
        selfSeed: new Map(m.selfSeedShares.map(s => [s.of, s.share]))
      })
    },
    finish: () => {
      at('unmask', 'finish')
      quorum(unmasks.size, 'unmask')
      const index = shamirIndex(u1)
      const sharesOf = (kind: 'maskKey' | 'selfSeed', of: string): Share[] =>
        [...unmasks].map(([from, u]) => shareFromBytes(index.get(from)!, u[kind].get(of)!))

      const sum = new Uint32Array(vectorLength)
      for (const v of u3) addMaskInto(sum, masked.get(v)!, 1)
      // Remove every survivor's self mask.
      for (const v of u3) {
        const commit = adverts.get(v)!.selfCommit
        const seed = reconstructSecret(sharesOf('selfSeed', v), threshold, { length: 32, check: s => checkSelfCommitment(context, s, commit) })
        addMaskInto(sum, selfMask(context, v, seed, vectorLength), -1)
      }
      // Cancel the pair masks survivors added towards members that dropped after sharing keys.
      const dropped = u2.filter(v => !u3.includes(v))
      for (const v of dropped) {
        const maskPk = adverts.get(v)!.maskPk
        const sk = reconstructSecret(sharesOf('maskKey', v), threshold, { length: 32, check: s => bytesEqual(x25519PublicKey(s), maskPk) })
        for (const u of u3) {
          // u added sign(u, v) * mask(u, v); the same mask seen from v carries the opposite sign.
          const { mask, sign } = pairMask(context, v, sk, u, adverts.get(u)!.maskPk, vectorLength)
          addMaskInto(sum, mask, sign)
        }
      }
      stage = 'done'
      return { sum: reduceToRing(sum, ringBits), contributors: [...u3], recovered: dropped }
    }
  }
}
