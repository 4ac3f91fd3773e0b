/**
 * The site runtime's own decoders and inputs, without a network: update and
 * commit bodies, secagg's binary fields, settings, the regression learner,
 * and the order of a site's lifecycle. Each bad input is a named error.
 */
import { describe, expect, it } from 'vitest'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { createCompressor } from '../coordinator/compression/combined.ts'
import { systemClock } from '../node/components.ts'
import { aggregateToBytes, type CommittedRound } from '../node/round-log.ts'
import { decodeCommitBundle, decodeUpdate, encodeCommitBundle, encodeUpdate } from '../node/site/bundle.ts'
import { parseFederationSettings } from '../node/site/config.ts'
import { createRegressionLearner } from '../node/site/regression-learner.ts'
import { createSite } from '../node/site/site.ts'
import { fromWire, toWire } from '../protocols/secagg/secagg.ts'
import { decodeTensors, encodeTensors } from '../protocols/tensor-codec/tensor-codec.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import { tempDir } from './mesh-helpers.ts'
import { siteIdentities, SPEC_HASH } from './support/site-federation.ts'

const template: TensorMap = new Map([['a', { shape: [2], data: new Float32Array(2) }], ['b', { shape: [2, 2], data: new Float32Array(4) }]])
const delta = (values: number[]): TensorMap => new Map([['a', { shape: [2], data: Float32Array.from(values.slice(0, 2)) }], ['b', { shape: [2, 2], data: Float32Array.from(values.slice(2)) }]])
/** What the coordinator sees: the body through the codec, as the update service decodes it. */
const overTheWire = (tensors: TensorMap): TensorMap => decodeTensors(encodeTensors(tensors, { dtype: 'f32' }))

describe('update bodies', () => {
  it('carry the delta as the shared tensors, or a compressed payload byte for byte', () => {
    const plain = encodeUpdate('1:site-a', delta([1, 2, 3, 4, 5, 6]))
    expect(decodeUpdate(plain.meta, overTheWire(plain.tensors), template, 6)).toEqual({ nonce: '1:site-a', delta: Float32Array.of(1, 2, 3, 4, 5, 6), wireBytes: 24 })
    const c = createCompressor({ kind: 'topk-int8', fraction: 0.5, blockSize: 8 }, { length: 6 }).compress(Float32Array.of(1, -2, 3, -4, 5, -6))
    const packed = encodeUpdate('1:site-a', delta([0, 0, 0, 0, 0, 0]), { kind: 'topk-int8', bytes: c.bytes })
    const got = decodeUpdate(packed.meta, overTheWire(packed.tensors), template, 6)
    expect(got.delta).toEqual(c.decoded)
    expect(got.wireBytes).toBe(c.bytes.byteLength)
  })

  it('refuse what does not fit the federation, with named errors', () => {
    const plain = encodeUpdate('1:x', delta([1, 2, 3, 4, 5, 6]))
    const other: TensorMap = new Map([['a', { shape: [2], data: new Float32Array(2) }], ['b', { shape: [4], data: new Float32Array(4) }]])
    expect(() => decodeUpdate(plain.meta, other, template, 6)).toThrow(expect.objectContaining({ name: 'UpdatePayloadError', message: "update tensor 'b' has shape [4], expected [2, 2]" }))
    expect(() => decodeUpdate({ encoding: 'zip', nonce: 'x' }, plain.tensors, template, 6)).toThrow(expect.objectContaining({ name: 'UpdatePayloadError' }))
    expect(() => decodeUpdate(plain.meta, delta([1, 2, 3, Number.POSITIVE_INFINITY, 5, 6]), template, 6))
      .toThrow(expect.objectContaining({ name: 'NonFiniteUpdateError', message: 'update holds a non-finite value (Infinity) at index 3 of 6' }))
    const packed = encodeUpdate('1:x', template, { kind: 'int8', bytes: new Uint8Array([1, 2, 3, 4, 5]) })
    expect(() => decodeUpdate(packed.meta, packed.tensors, template, 6)).toThrow(expect.objectContaining({ name: 'UpdatePayloadError', message: expect.stringMatching(/^compressed payload does not decode: /) }))
    expect(() => decodeUpdate({ ...packed.meta, payloadBytes: 99 }, packed.tensors, template, 6)).toThrow(expect.objectContaining({ name: 'UpdatePayloadError', message: 'compressed payload claims 99 bytes but carries 8' }))
  })
})

describe('commit bundles', () => {
  const record: CommittedRound = {
    round: 1, participants: ['a'], dropouts: [], updates: [{ site: 'a', nonce: '1:a', samples: 3 }], aggregateHash: 'a'.repeat(64),
    stateHash: 'b'.repeat(64), specHash: 'spec', strategy: 'fedavg', seed: 7, prevHash: null
  }
  const aggregateBytes = aggregateToBytes(Float32Array.of(0.5, -1.25))

  it('carry a round whole, through the codec', () => {
    const { info, body } = encodeCommitBundle({ record, aggregateBytes, strategyState: { m: [1, 2] }, facts: {} })
    const parts = decodeCommitBundle(info, decodeTensors(body))
    expect(parts).toEqual({ record, aggregateBytes, strategyState: { m: [1, 2] }, facts: {} })
    expect(info).toMatchObject({ round: 1, dtype: 'f32', bytes: body.byteLength })
  })

  it('refuse missing parts, wrong lengths and a record of another round', () => {
    const { info, body } = encodeCommitBundle({ record, aggregateBytes, strategyState: null, facts: {} })
    const tensors = decodeTensors(body)
    expect(() => decodeCommitBundle({ ...info, meta: {} }, tensors)).toThrow(expect.objectContaining({ name: 'CommitBundleError' }))
    const lacking = new Map(tensors)
    lacking.delete('state')
    expect(() => decodeCommitBundle(info, lacking)).toThrow(expect.objectContaining({ name: 'CommitBundleError', message: 'commit of round 1 must carry aggregate, facts, record and state' }))
    expect(() => decodeCommitBundle({ ...info, round: 2 }, tensors)).toThrow(expect.objectContaining({ name: 'CommitBundleError', message: 'commit announced as round 2 carries a record of another round' }))
    expect(() => decodeCommitBundle({ ...info, meta: { ...info.meta, recordBytes: 3 } }, tensors)).toThrow(expect.objectContaining({ name: 'CommitBundleError', message: expect.stringMatching(/^commit part 'record' claims 3 bytes/) }))
  })
})

describe('secagg binary fields', () => {
  it('travel as { b64 } and come back as bytes; oversized or non-base64 fields are refused', () => {
    const msg = { type: 'secagg/advertise', keys: [new Uint8Array([1, 2, 3])], nested: { sig: new Uint8Array(64).fill(9) } }
    expect(fromWire(JSON.parse(JSON.stringify(toWire(msg))))).toEqual(msg)
    expect(() => fromWire({ b64: 'A'.repeat(6000) })).toThrow(expect.objectContaining({ name: 'FrameHeaderError', message: 'secagg binary field is not base64 of at most 4096 bytes' }))
    expect(() => fromWire({ b64: 'not base64!' })).toThrow(expect.objectContaining({ name: 'FrameHeaderError' }))
  })
})

describe('settings and the regression learner', () => {
  it('name the field that is wrong', () => {
    expect(() => parseFederationSettings({ strategy: { kind: 'fedavg' }, localSteps: 0 })).toThrow(expect.objectContaining({ name: 'ConfigError', message: expect.stringMatching(/^federation settings: localSteps: /) }))
    expect(() => parseFederationSettings({ strategy: { kind: 'fedavg' }, localSteps: 1, heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 1_000 }))
      .toThrow(expect.objectContaining({ name: 'ConfigError', message: expect.stringContaining('heartbeatTimeoutMs: heartbeatTimeoutMs must be longer than heartbeatIntervalMs') }))
    expect(parseFederationSettings({ strategy: { kind: 'fedavg' }, localSteps: 1 })).toMatchObject({ compression: { kind: 'none' }, quorumFraction: 0.5, roundTimeoutMs: 60_000, seed: 0 })
    expect(() => createRegressionLearner({ x: new Float64Array(5), y: new Float64Array(2), dim: 3, lr: 0.1 })).toThrow(expect.objectContaining({ name: 'ConfigError', message: 'regression learner needs 2 x 3 features, got 5 values' }))
  })

  it('trains by gradient descent on the mean squared error, in float64', async () => {
    // One row x = (1, 2), y = 3, from w = 0: grad = 2 * (0 - 3) * x = (-6, -12); lr 0.1 gives w = (0.6, 1.2).
    const learner = createRegressionLearner({ x: Float64Array.of(1, 2), y: Float64Array.of(3), dim: 2, lr: 0.1 })
    expect(await learner.trainLocal(1)).toEqual({ samples: 1, loss: 9 })
    expect(learner.getShared().get('w')!.data).toEqual(Float32Array.of(0.6, 1.2))
  })
})

describe('a site\'s lifecycle', () => {
  it('refuses a bad spec hash, and rounds before start or after stop', async () => {
    const dir = tempDir('fm-site-wire-')
    try {
      const [identity] = await siteIdentities(dir.path, 1)
      const init = { site: 'solo', identity: identity!, store: dir.path + '/store', host: { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], insecureOpenMesh: true, allowlist: [] }, federation: { strategy: { kind: 'fedavg' as const }, localSteps: 1 }, specHash: SPEC_HASH }
      const components = { clock: systemClock, random: createSeededRandom(1), logger: createSilentLogger(), learner: createRegressionLearner({ x: Float64Array.of(1), y: Float64Array.of(1), dim: 1, lr: 0.1 }) }
      expect(() => createSite({ ...init, specHash: 'abc' }, components)).toThrow(expect.objectContaining({ name: 'ConfigError', message: "specHash must be a sha256 hex digest, got 'abc'" }))
      const site = createSite(init, components)
      await expect(site.run({ untilRound: 1 })).rejects.toMatchObject({ name: 'SiteStateError', message: 'the site is not started: call start() first' })
      await site.start()
      // Alone in its federation it is its own quorum: a one-site round commits.
      expect(await site.runRounds(1)).toBe(1)
      expect(site.status()).toMatchObject({ site: 'solo', round: 1, coordinator: { site: 'solo' }, peers: [], privacy: null })
      await site.stop()
      await expect(site.run({ untilRound: 2 })).rejects.toMatchObject({ name: 'SiteStateError', message: 'the site is stopped' })
      await expect(site.start()).rejects.toMatchObject({ name: 'SiteStateError' })
    } finally {
      dir.remove()
    }
  })
})
