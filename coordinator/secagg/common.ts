/**
 * What client and server of a secure-aggregation round share: the round
 * parameters and their checks, the bytes that get signed, the key
 * derivations, and zod parsing that turns a bad message into a named error.
 */
import type { z } from 'zod'
import { InvalidArgumentError, SecAggAbortedError, SecAggProtocolError } from '../errors.ts'
import { bytesEqual, concatFields, sha256, utf8, x25519 } from './primitives.ts'
import { deriveKey, expandMask } from './prg.ts'
import { checkQuantisation, type RingBits } from './quantise.ts'
import type { AdvertiseMessage } from './messages.ts'

export interface SecAggParams {
  /** Unique per federation and round (e.g. `${federationId}/${round}`); bound into every key and signature. */
  roundId: string
  /** Members invited to the round. */
  n: number
  /** Members needed at every stage; also the Shamir threshold. Must exceed n/2. */
  threshold: number
  vectorLength: number
  /** Ring Z_2^k of the masked values. Default 32. */
  ringBits?: RingBits
}

/** Signs with the site identity (Ed25519 at the node layer). */
export type Sign = (bytes: Uint8Array) => Uint8Array
/** Checks a signature by `siteId`'s identity key. */
export type Verify = (siteId: string, bytes: Uint8Array, signature: Uint8Array) => boolean

export function checkParams (p: SecAggParams): void {
  if (typeof p.roundId !== 'string' || p.roundId.length === 0 || p.roundId.length > 256) throw new InvalidArgumentError('roundId must be a non-empty string of at most 256 characters')
  if (!Number.isInteger(p.n) || p.n < 2 || p.n > 1000) throw new InvalidArgumentError(`n must be an integer 2..1000, got ${p.n}`)
  // t > n/2: two disjoint groups of honest members can never both reach the
  // threshold, so a lying server cannot collect both kinds of share of one member.
  if (!Number.isInteger(p.threshold) || p.threshold <= p.n / 2 || p.threshold > p.n) {
    throw new InvalidArgumentError(`threshold must be an integer with n/2 < threshold <= n (n = ${p.n}), got ${p.threshold}`)
  }
  if (!Number.isInteger(p.vectorLength) || p.vectorLength < 1 || p.vectorLength > 2 ** 30) throw new InvalidArgumentError(`vectorLength must be an integer 1..2^30, got ${p.vectorLength}`)
  const bits = p.ringBits ?? 32
  if (bits !== 16 && bits !== 32) throw new InvalidArgumentError(`ringBits must be 16 or 32, got ${String(bits)}`)
}

export function checkQuantisationFor (p: SecAggParams, clipNorm: number, scale: number): void {
  checkQuantisation(p.n, { clipNorm, scale, ringBits: p.ringBits ?? 32 })
}

/** The round's binding: every HKDF salt, AEAD AAD and signed payload starts from it. */
export function roundContext (roundId: string): Uint8Array {
  return sha256(utf8('forgemesh/secagg/1/context'), utf8(roundId))
}

export function advertisePayload (context: Uint8Array, a: Pick<AdvertiseMessage, 'siteId' | 'encPk' | 'maskPk' | 'selfCommit'>): Uint8Array {
  return concatFields(utf8('forgemesh/secagg/advertise'), context, utf8(a.siteId), a.encPk, a.maskPk, a.selfCommit)
}

export function consistencyPayload (context: Uint8Array, survivors: readonly string[]): Uint8Array {
  return concatFields(utf8('forgemesh/secagg/survivors'), context, ...[...survivors].sort(compareIds).map(utf8))
}

export function selfCommitment (context: Uint8Array, selfSeed: Uint8Array): Uint8Array {
  return sha256(concatFields(utf8('forgemesh/secagg/self-commit'), context, selfSeed))
}

export function checkSelfCommitment (context: Uint8Array, selfSeed: Uint8Array, commit: Uint8Array): boolean {
  return bytesEqual(selfCommitment(context, selfSeed), commit)
}

/** Code-unit order of site ids: decides who adds and who subtracts a pair mask. */
export function compareIds (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** The pairwise mask between `self` and `peer`, as `self` adds it: +mask if self < peer, else -mask. */
export function pairMask (context: Uint8Array, selfId: string, selfMaskSk: Uint8Array, peerId: string, peerMaskPk: Uint8Array, length: number): { mask: Uint32Array, sign: 1 | -1 } {
  const shared = x25519(selfMaskSk, peerMaskPk)
  const [lo, hi] = compareIds(selfId, peerId) < 0 ? [selfId, peerId] : [peerId, selfId]
  const key = deriveKey(shared, context, 'pair-mask', lo, hi)
  return { mask: expandMask(key, length), sign: compareIds(selfId, peerId) < 0 ? 1 : -1 }
}

export function selfMask (context: Uint8Array, siteId: string, selfSeed: Uint8Array, length: number): Uint32Array {
  return expandMask(deriveKey(selfSeed, context, 'self-mask', siteId), length)
}

/** The AEAD key for share boxes from `from` to `to` (one key per direction, so a zero nonce is safe). */
export function boxKey (context: Uint8Array, encSk: Uint8Array, peerEncPk: Uint8Array, from: string, to: string): Uint8Array {
  return deriveKey(x25519(encSk, peerEncPk), context, 'share-box', from, to)
}

export const BOX_NONCE = new Uint8Array(12)

export function boxAad (context: Uint8Array, from: string, to: string): Uint8Array {
  return concatFields(utf8('forgemesh/secagg/box'), context, utf8(from), utf8(to))
}

/** zod-parses a message; any failure is a SecAggProtocolError naming the stage and field. */
export function parseMessage<S extends z.ZodType> (schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new SecAggProtocolError(`bad ${what} message: ${issue === undefined ? 'invalid' : `${issue.path.join('.') || '(root)'}: ${issue.message}`}`)
  }
  return r.data
}

export function checkRound (roundId: string, got: string, what: string): void {
  if (got !== roundId) throw new SecAggProtocolError(`${what} message is for round '${got}', this is round '${roundId}'`)
}

export function requireQuorum (count: number, threshold: number, stage: string): void {
  if (count < threshold) throw new SecAggAbortedError(`secure aggregation aborted at ${stage}: ${count} members left, the threshold is ${threshold}; nothing unmasked is released`)
}

/** Members are addressed by their 1-based position in the sorted roster: that is their Shamir x. */
export function shamirIndex (roster: readonly string[]): Map<string, number> {
  return new Map([...roster].sort(compareIds).map((id, i) => [id, i + 1]))
}

export function uniqueIds (ids: readonly string[], what: string): void {
  if (new Set(ids).size !== ids.length) throw new SecAggProtocolError(`${what} lists a member twice`)
}
