/**
 * Secure aggregation carried over the mesh (protocols/secagg): the member
 * side answers the coordinator's stage requests with coordinator/secagg's
 * client; the coordinator side drives coordinator/secagg's server through
 * the five stages and learns only the sum of the survivors' clipped,
 * quantised inputs. Secagg site ids are peer ids: a peer id names its
 * Ed25519 key, so every member can check every advertised key's signature
 * and a coordinator cannot substitute keys of its own.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger, Random } from '../../coordinator/components.ts'
import { SecAggProtocolError } from '../../coordinator/errors.ts'
import { createSecAggClient, type SecAggClient } from '../../coordinator/secagg/client.ts'
import type { Sign, Verify } from '../../coordinator/secagg/common.ts'
import { dequantise } from '../../coordinator/secagg/quantise.ts'
import { createSecAggServer } from '../../coordinator/secagg/server.ts'
import { SECAGG_MAX_FRAME_BYTES, SECAGG_PROTOCOL, SECAGG_TIMEOUT_MS } from '../../protocols/secagg/constants.ts'
import { fromWire, SecAggReply, SecAggRequest, toWire, type SecAggParamsHeader, type SecAggStage } from '../../protocols/secagg/secagg.ts'
import type { SiteIdentity } from '../identity.ts'
import type { SiteHost } from '../mesh/host.ts'

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url')

/** Synchronous Ed25519 signing with the site's key (secagg's client signs inline). */
export function identitySigner (identity: SiteIdentity): Sign {
  const raw = identity.privateKey.raw
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: b64url(raw.subarray(0, 32)), x: b64url(identity.publicKey) }, format: 'jwk' })
  return (bytes) => new Uint8Array(edSign(null, bytes, key))
}

/** Verifies a signature against the key a peer id names. */
export function peerIdVerifier (): Verify {
  const keys = new Map<string, KeyObject>()
  return (siteId, bytes, signature) => {
    try {
      let key = keys.get(siteId)
      if (key === undefined) {
        const pub = peerIdFromString(siteId).publicKey
        if (pub?.type !== 'Ed25519') return false
        key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(pub.raw) }, format: 'jwk' })
        keys.set(siteId, key)
      }
      return edVerify(null, bytes, key, signature)
    } catch {
      return false
    }
  }
}

export interface StageAnswer { reply: SecAggReply, body?: Uint8Array }

export interface SecAggMemberComponents {
  selfPeerId: string
  random: Random
  sign: Sign
  verify: Verify
  logger: Logger
  /** Whether `peerId` is the coordinator this site follows now. */
  isLeader: (peerId: string) => boolean
  /** The round this site can take part in, and the hash of the parameters it starts from. */
  next: () => { round: number, baseHash: string }
  /** Asked about a round beyond ours: the coordinator holds rounds we missed. */
  behind: (peerId: string) => void
  /** This site's clipped (and noised) update for the round, charged to its ledger. */
  input: (round: number, signal: AbortSignal) => Promise<{ delta: Float32Array, samples: number } | undefined>
}

/** The member side: one secagg client per round, fed the coordinator's stage messages. */
export function createSecAggMember (components: SecAggMemberComponents): { answer: (peerId: string, req: SecAggRequest, signal: AbortSignal) => Promise<StageAnswer> } {
  let current: { roundId: string, round: number, client: SecAggClient } | undefined

  const clientFor = (req: SecAggRequest): SecAggClient => {
    if (current?.roundId !== req.roundId) throw new SecAggProtocolError(`no secure-aggregation round ${req.roundId} is open here`)
    return current.client
  }

  const answer = async (peerId: string, req: SecAggRequest, signal: AbortSignal): Promise<StageAnswer> => {
    if (!components.isLeader(peerId)) throw new SecAggProtocolError(`${peerId} is not the coordinator this site follows`)
    const reply = (message: unknown, extra: { samples?: number } = {}): SecAggReply => ({ kind: 'secagg-reply', stage: req.stage, message: toWire(message), ...extra })
    const message = fromWire(req.message)
    switch (req.stage) {
      case 'advertise': {
        const p = req.params
        if (p === undefined) throw new SecAggProtocolError('an advertise request must carry the round parameters')
        const next = components.next()
        if (req.round > next.round) components.behind(peerId)
        if (req.round !== next.round || p.baseHash !== next.baseHash) throw new SecAggProtocolError(`this site is at round ${next.round} from ${next.baseHash.slice(0, 12)}; asked for round ${req.round} from ${p.baseHash.slice(0, 12)}`)
        const client = createSecAggClient({ roundId: req.roundId, n: p.n, threshold: p.threshold, vectorLength: p.vectorLength, ringBits: p.ringBits, siteId: components.selfPeerId, clipNorm: p.clipNorm, scale: p.scale, seed: randomBytes(32) }, { random: components.random, sign: components.sign, verify: components.verify })
        current = { roundId: req.roundId, round: req.round, client }
        return { reply: reply(client.advertise()) }
      }
      case 'share-keys': return { reply: reply(clientFor(req).shareKeys(message)) }
      case 'masked-input': {
        const client = clientFor(req)
        const input = await components.input(current!.round, signal)
        if (input === undefined) throw new SecAggProtocolError(`round ${req.round} was committed while this site trained`)
        const { masked, ...rest } = client.maskedInput(message, input.delta)
        return { reply: reply(rest, { samples: input.samples }), body: new Uint8Array(masked.buffer, masked.byteOffset, masked.byteLength) }
      }
      case 'consistency': return { reply: reply(clientFor(req).consistency(message)) }
      case 'unmask': return { reply: reply(clientFor(req).unmask(message)) }
      default: {
        const never: never = req.stage
        return never
      }
    }
  }
  return { answer }
}

/** Registers the member side on the host. */
export async function serveSecAgg (host: SiteHost, member: ReturnType<typeof createSecAggMember>): Promise<void> {
  await host.handle(SECAGG_PROTOCOL, async (frame, ctx) => {
    const { reply, body } = await member.answer(ctx.peerId, frame.header as SecAggRequest, ctx.signal)
    return body === undefined ? { header: reply } : { header: reply, body }
  }, { maxFrameBytes: SECAGG_MAX_FRAME_BYTES, schema: SecAggRequest, timeoutMs: SECAGG_TIMEOUT_MS })
}

export interface SecureSum {
  /** Sum of the contributors' clipped inputs (dequantised). */
  sum: Float32Array
  /** Peer ids whose inputs the sum holds, and members whose masks were recovered after they dropped. */
  contributors: string[]
  recovered: string[]
  samples: Map<string, number>
}

/**
 * The coordinator side: one request per member per stage, in parallel; a
 * member that fails a stage drops out (the protocol recovers its masks); a
 * stage left with fewer than `threshold` members ends the round with
 * SecAggAbortedError and no sum.
 */
export async function runSecureAggregation (init: { round: number, roundId: string, participants: string[], params: SecAggParamsHeader, timeoutMs: number }, components: {
  host: SiteHost
  selfPeerId: string
  local: (req: SecAggRequest, signal: AbortSignal) => Promise<StageAnswer>
  verify: Verify
  logger: Logger
}): Promise<SecureSum> {
  const { round, roundId, params } = init
  const server = createSecAggServer({ roundId, n: params.n, threshold: params.threshold, vectorLength: params.vectorLength, ringBits: params.ringBits }, { verify: components.verify })
  const log = components.logger

  const ask = async (peer: string, stage: SecAggStage, message?: unknown): Promise<StageAnswer> => {
    const req: SecAggRequest = { kind: 'secagg', stage, round, roundId, ...(stage === 'advertise' ? { params } : {}), ...(message !== undefined ? { message: toWire(message) } : {}) }
    const signal = AbortSignal.timeout(init.timeoutMs)
    if (peer === components.selfPeerId) return await components.local(req, signal)
    const res = await components.host.request(peer, SECAGG_PROTOCOL, { header: req }, { schema: SecAggReply, maxFrameBytes: SECAGG_MAX_FRAME_BYTES, timeoutMs: init.timeoutMs })
    if (res.header.stage !== stage) throw new SecAggProtocolError(`${peer} answered ${stage} with ${res.header.stage}`)
    return res.body === undefined ? { reply: res.header } : { reply: res.header, body: res.body }
  }

  /** Asks every member for this stage and hands each answer to `take`; failures only drop the member. */
  const stage = async (stageName: SecAggStage, peers: readonly string[], messageFor: (peer: string) => unknown, take: (peer: string, a: StageAnswer) => void): Promise<void> => {
    const answers = await Promise.allSettled(peers.map(async p => await ask(p, stageName, messageFor(p))))
    answers.forEach((a, i) => {
      const peer = peers[i]!
      try {
        if (a.status === 'rejected') throw a.reason
        take(peer, a.value)
      } catch (err) {
        log.info('secagg.dropped', { round, stage: stageName, peer, error: (err as Error).message })
      }
    })
  }

  const samples = new Map<string, number>()
  await stage('advertise', init.participants, () => undefined, (_p, a) => { server.receiveAdvertisement(fromWire(a.reply.message)) })
  const roster = server.closeAdvertise()
  const u1 = roster.advertisements.map(a => a.siteId)
  await stage('share-keys', u1, () => roster, (_p, a) => { server.receiveShares(fromWire(a.reply.message)) })
  const deliveries = new Map(server.closeShares().map(d => [d.to, d]))
  await stage('masked-input', [...deliveries.keys()], p => deliveries.get(p), (p, a) => {
    const body = a.body
    if (body === undefined || body.byteLength !== 4 * params.vectorLength) throw new SecAggProtocolError(`${p} sent a masked input of ${body?.byteLength ?? 0} bytes, expected ${4 * params.vectorLength}`)
    const masked = new Uint32Array(params.vectorLength)
    new Uint8Array(masked.buffer).set(body)
    server.receiveMaskedInput({ ...(fromWire(a.reply.message) as object), masked })
    samples.set(p, a.reply.samples ?? 1)
  })
  const survivors = server.closeMaskedInput()
  await stage('consistency', survivors.survivors, () => survivors, (_p, a) => { server.receiveConsistency(fromWire(a.reply.message)) })
  const request = server.closeConsistency()
  await stage('unmask', request.survivors, () => request, (_p, a) => { server.receiveUnmask(fromWire(a.reply.message)) })
  const result = server.finish()
  return { sum: dequantise(result.sum, params.scale, params.ringBits), contributors: result.contributors, recovered: result.recovered, samples }
}
