/**
 * What the site runtime puts in the bodies of the update and model
 * protocols. Both bodies are named-tensor codec bodies (protocols/tensor-codec),
 * so the mesh checks their hash and size before the runtime sees them:
 *
 * - An update is the pseudo-gradient as the shared tensors themselves (f32,
 *   compression 'none'), or one `payload` entry carrying the compressed
 *   bytes (coordinator/compression/wire.ts layout) in float32 lanes. Lanes are
 *   a byte-exact carrier: the codec copies f32 data as bytes both ways.
 * - A commit is `aggregate` (the new global vector), and `record`, `state` and
 *   `facts` (JSON bytes in lanes): everything a member needs to write the
 *   same round to its own log. Lengths in bytes travel in the header's meta.
 */
import { z } from 'zod'
import { decompress } from '../../coordinator/compression/combined.ts'
import type { RoundBytes } from '../../coordinator/compression/accounting.ts'
import type { JsonValue } from '../../coordinator/strategies/types.ts'
import { CommitBundleError, NonFiniteUpdateError, UpdatePayloadError } from '../../protocols/errors.ts'
import type { CommitInfo } from '../../protocols/model/model.ts'
import { encodeTensors, tensorBodyHash } from '../../protocols/tensor-codec/tensor-codec.ts'
import { flattenTensors, type Tensor, type TensorMap } from '../../protocols/tensors.ts'
import type { CommittedRound, FetchedRound } from '../round-log.ts'

/** A round record is a few hundred bytes per participant; anything near this is not one. */
const MAX_RECORD_BYTES = 4 * 1024 * 1024

/** Bytes as float32 lanes (zero padded to a multiple of 4). */
export function bytesToLanes (bytes: Uint8Array): Tensor {
  const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4)
  padded.set(bytes)
  return { shape: [padded.byteLength / 4], data: new Float32Array(padded.buffer) }
}

/** The first `length` bytes of lanes; the padding must be shorter than one lane. */
export function lanesToBytes (t: Tensor | undefined, length: number, what: string, Err: typeof UpdatePayloadError = UpdatePayloadError): Uint8Array {
  if (t === undefined) throw new Err(`${what} is missing`)
  const have = t.data.byteLength
  if (t.shape.length !== 1 || length > have || have - length >= 4) throw new Err(`${what} claims ${length} bytes but carries ${have}`)
  return new Uint8Array(t.data.buffer, t.data.byteOffset, length)
}

const Nonce = z.string().min(1).max(128)

export const UpdateMetaSchema = z.discriminatedUnion('encoding', [
  z.object({ encoding: z.literal('tensors'), nonce: Nonce }),
  z.object({ encoding: z.literal('compressed'), nonce: Nonce, compression: z.string().max(32), payloadBytes: z.number().int().min(0) })
])
export type UpdateMeta = z.infer<typeof UpdateMetaSchema>

export interface EncodedUpdate {
  tensors: TensorMap
  meta: UpdateMeta
}

/** The update body for a pseudo-gradient, compressed (`payload` given) or as the shared tensors. */
export function encodeUpdate (nonce: string, delta: TensorMap, payload?: { kind: string, bytes: Uint8Array }): EncodedUpdate {
  if (payload === undefined) return { tensors: delta, meta: { encoding: 'tensors', nonce } }
  return {
    tensors: new Map([['payload', bytesToLanes(payload.bytes)]]),
    meta: { encoding: 'compressed', nonce, compression: payload.kind, payloadBytes: payload.bytes.byteLength }
  }
}

/**
 * The dense pseudo-gradient an update body stands for, checked against the
 * federation's parameters (`template`: names, shapes and order) and for
 * non-finite values. Throws wire-format errors: the sender is cut off.
 */
export function decodeUpdate (metaInput: unknown, tensors: TensorMap, template: TensorMap, vectorLength: number): { nonce: string, delta: Float32Array, wireBytes: number } {
  const parsed = UpdateMetaSchema.safeParse(metaInput)
  if (!parsed.success) throw new UpdatePayloadError(`update meta rejected: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
  const meta = parsed.data
  let delta: Float32Array
  if (meta.encoding === 'tensors') {
    if (tensors.size !== template.size) throw new UpdatePayloadError(`update carries ${tensors.size} tensors, the federation shares ${template.size}`)
    for (const [name, t] of template) {
      const got = tensors.get(name)
      if (got === undefined) throw new UpdatePayloadError(`update lacks tensor '${name}'`)
      if (got.shape.length !== t.shape.length || got.shape.some((d, i) => d !== t.shape[i])) {
        throw new UpdatePayloadError(`update tensor '${name}' has shape [${got.shape.join(', ')}], expected [${t.shape.join(', ')}]`)
      }
    }
    delta = flattenTensors(tensors, [...template.keys()])
  } else {
    if (tensors.size !== 1) throw new UpdatePayloadError(`a compressed update carries one payload, got ${tensors.size} tensors`)
    const bytes = lanesToBytes(tensors.get('payload'), meta.payloadBytes, 'compressed payload')
    try {
      delta = decompress(bytes, vectorLength)
    } catch (err) {
      throw new UpdatePayloadError(`compressed payload does not decode: ${(err as Error).message}`, { cause: err })
    }
  }
  for (let i = 0; i < delta.length; i++) {
    if (!Number.isFinite(delta[i])) throw new NonFiniteUpdateError(`update holds a non-finite value (${delta[i]}) at index ${i} of ${delta.length}`)
  }
  return { nonce: meta.nonce, delta, wireBytes: payloadBytes(meta, vectorLength) }
}

/** What an update's payload takes on the wire, as the round's byte accounting counts it (codec framing aside). */
export function payloadBytes (meta: UpdateMeta, vectorLength: number): number {
  return meta.encoding === 'compressed' ? meta.payloadBytes : 4 * vectorLength
}

/** What a member learns about a round beyond its record: the byte accounting. */
export interface CommitFacts {
  bytes?: RoundBytes
}

export interface CommitBundle {
  record: CommittedRound
  aggregateBytes: Uint8Array
  strategyState: JsonValue
  facts: CommitFacts
}

const encoder = new TextEncoder()
const BundleMeta = z.object({ recordBytes: z.number().int().min(1).max(MAX_RECORD_BYTES), stateBytes: z.number().int().min(0), factsBytes: z.number().int().min(0) })

/** A committed round as a model-protocol commit: info (hash of the body) and body. */
export function encodeCommitBundle (b: CommitBundle): { info: CommitInfo, body: Uint8Array } {
  const record = encoder.encode(JSON.stringify(b.record))
  const state = encoder.encode(JSON.stringify(b.strategyState))
  const facts = encoder.encode(JSON.stringify(b.facts))
  const tensors: TensorMap = new Map([
    ['aggregate', bytesToLanes(b.aggregateBytes)],
    ['facts', bytesToLanes(facts)],
    ['record', bytesToLanes(record)],
    ['state', bytesToLanes(state)]
  ])
  const body = encodeTensors(tensors, { dtype: 'f32' })
  const info: CommitInfo = {
    round: b.record.round,
    hash: tensorBodyHash(body),
    bytes: body.byteLength,
    dtype: 'f32',
    meta: { recordBytes: record.byteLength, stateBytes: state.byteLength, factsBytes: facts.byteLength }
  }
  if (b.record.prevHash !== null) info.parentHash = b.record.prevHash
  return { info, body }
}

const parseJson = (bytes: Uint8Array, what: string): unknown => {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new CommitBundleError(`${what} is not valid JSON`, { cause: err })
  }
}

/**
 * The parts of a received commit, not yet trusted: the round log checks the
 * record's schema, its place in the chain and the hashes (verifyFetched).
 */
export function decodeCommitBundle (info: CommitInfo, tensors: TensorMap): FetchedRound & { facts: CommitFacts } {
  const meta = BundleMeta.safeParse(info.meta)
  if (!meta.success) throw new CommitBundleError(`commit of round ${info.round} has no valid part lengths: ${meta.error.issues[0]?.message ?? 'invalid'}`)
  const part = (name: string, length: number): Uint8Array => lanesToBytes(tensors.get(name), length, `commit part '${name}'`, CommitBundleError)
  const aggregate = tensors.get('aggregate')
  if (aggregate === undefined || tensors.size !== 4) throw new CommitBundleError(`commit of round ${info.round} must carry aggregate, facts, record and state`)
  const record = parseJson(part('record', meta.data.recordBytes), 'commit record')
  if (typeof record !== 'object' || record === null || (record as { round?: unknown }).round !== info.round) {
    throw new CommitBundleError(`commit announced as round ${info.round} carries a record of another round`)
  }
  const factsRaw = parseJson(part('facts', meta.data.factsBytes), 'commit facts')
  const facts: CommitFacts = typeof factsRaw === 'object' && factsRaw !== null ? factsRaw as CommitFacts : {}
  return {
    record,
    // A copy: the frame's buffer is not ours to keep.
    aggregateBytes: new Uint8Array(aggregate.data.buffer, aggregate.data.byteOffset, aggregate.data.byteLength).slice(),
    strategyState: parseJson(part('state', meta.data.stateBytes), 'commit strategy state'),
    facts
  }
}
