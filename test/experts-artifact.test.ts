/**
 * Expert artifacts and the registry: build -> verify round trip, each way an
 * artifact can be wrong caught with its named error, signed revocations, and
 * the LevelDB registry (latest version, history, withdrawal, reopen).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createManualClock } from '../coordinator/components.ts'
import { decodeSafetensors, encodeSafetensors } from '../protocols/safetensors/index.ts'
import { canonicalRecordJson, manifestSigningBytes } from '../protocols/experts-announce/records.ts'
import { buildArtifact, memberKeys, verifyArtifact, weightsHash, type VerifiedArtifact } from '../node/experts/artifact.ts'
import { createExpertRegistry } from '../node/experts/registry.ts'
import { signRevocation, verifyRevocation } from '../node/experts/revocation.ts'
import type { SiteIdentity } from '../node/identity.ts'
import { initParams } from '../node/model/params.ts'
import { parseMoeSpec, specHash } from '../node/model/spec.ts'
import { openSiteStore } from '../node/store.ts'
import { identities, tempDir } from './mesh-helpers.ts'

const spec = parseMoeSpec({ inputDim: 8, width: 6, expertHidden: 5, experts: 3, topK: 1, classes: 4, seed: 7 })
const otherSpec = parseMoeSpec({ ...spec, seed: 8 })
const params = initParams(spec)

describe('expert artifacts', () => {
  const dir = tempDir('fm-artifact-')
  const clock = createManualClock(1_700_000_000_000)
  let site: SiteIdentity, other: SiteIdentity, outsider: SiteIdentity
  let members: Map<string, Uint8Array>
  let good: VerifiedArtifact
  const opts = (): { members: Map<string, Uint8Array>, specHash: string, spec: typeof spec } => ({ members, specHash: specHash(spec), spec })

  beforeAll(async () => {
    [site, other, outsider] = await identities(dir.path, 3) as [SiteIdentity, SiteIdentity, SiteIdentity]
    members = memberKeys([site.peerId, other.peerId])
    good = await buildArtifact({
      identity: site, spec, expertId: 'digits-01', slot: 1, version: 2, parentVersion: 1, sampleCount: 12_000,
      metrics: { accuracy: 0.991, loss: 0.031 }, params,
      router: new Map([['router.row.w', { shape: [6], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }], ['router.row.b', { shape: [1], data: Float32Array.from([0.5]) }]])
    }, { clock })
  })
  afterAll(() => { dir.remove() })

  it('round-trips: the manifest, the weights bit for bit, the router row', async () => {
    const v = await verifyArtifact(good.bytes, { ...opts(), expectedHash: good.hash })
    expect(v.manifest).toEqual({
      siteId: site.peerId, expertId: 'digits-01', slot: 1, version: 2, parentVersion: 1, specHash: specHash(spec),
      sampleCount: 12_000, metrics: { accuracy: 0.991, loss: 0.031 }, createdAt: 1_700_000_000_000, weightsHash: good.manifest.weightsHash
    })
    expect([...v.weights.keys()]).toEqual(['expert.1.b1', 'expert.1.b2', 'expert.1.w1', 'expert.1.w2'])
    for (const [name, t] of v.weights) expect(Buffer.from(t.data.buffer)).toEqual(Buffer.from(params.get(name)!.data.buffer))
    expect(Array.from(v.router.get('router.row.w')!.data)).toEqual([1, 2, 3, 4, 5, 6])
    expect(v.signature).toHaveLength(88)
    // The file is plain safetensors: any reader sees the weights and the manifest.
    const plain = decodeSafetensors(good.bytes)
    expect(JSON.parse(plain.metadata['forgemesh.manifest']!)).toEqual(v.manifest)
  })

  it('rejects bytes that are not what was asked for', async () => {
    await expect(verifyArtifact(good.bytes, { ...opts(), expectedHash: '0'.repeat(64) }))
      .rejects.toMatchObject({ name: 'ArtifactHashMismatchError', message: `artifact bytes hash to ${good.hash}, not the ${'0'.repeat(64)} they were fetched as` })
  })

  it('rejects a tampered weight with ArtifactHashMismatchError', async () => {
    const tampered = good.bytes.slice()
    tampered[tampered.length - 3]! ^= 0x40
    await expect(verifyArtifact(tampered, opts())).rejects.toMatchObject({
      name: 'ArtifactHashMismatchError',
      message: expect.stringMatching(/^artifact [0-9a-f]{12} \(expert 'digits-01'\): its tensors hash to [0-9a-f]{64}, the signed manifest says [0-9a-f]{64}$/)
    })
  })

  it('rejects an edited manifest (a better metric) with ArtifactSignatureError', async () => {
    const decoded = decodeSafetensors(good.bytes)
    const edited = { ...good.manifest, metrics: { accuracy: 0.999, loss: 0.031 } }
    const bytes = encodeSafetensors(decoded.tensors, { ...decoded.metadata, 'forgemesh.manifest': canonicalRecordJson(edited) })
    await expect(verifyArtifact(bytes, opts())).rejects.toMatchObject({
      name: 'ArtifactSignatureError', message: `artifact ${(await import('../node/store.ts')).sha256Hex(bytes).slice(0, 12)} (expert 'digits-01'): the signature does not verify with the key of ${site.peerId}`
    })
  })

  it('rejects an artifact signed by a non-member with NotAMemberError', async () => {
    const stray = await buildArtifact({ identity: outsider, spec, expertId: 'stray', slot: 0, version: 1, sampleCount: 1, params }, { clock })
    await expect(verifyArtifact(stray.bytes, opts())).rejects.toMatchObject({
      name: 'NotAMemberError', message: `artifact ${stray.hash.slice(0, 12)} (expert 'stray') is signed by ${outsider.peerId}, which is not a member`
    })
    // A member's name on it does not help: the signature is checked with the member's key.
    const decoded = decodeSafetensors(stray.bytes)
    const forged = { ...stray.manifest, siteId: site.peerId }
    const sig = Buffer.from(await outsider.sign(manifestSigningBytes(forged))).toString('base64')
    const bytes = encodeSafetensors(decoded.tensors, { ...decoded.metadata, 'forgemesh.manifest': canonicalRecordJson(forged), 'forgemesh.signature': sig })
    await expect(verifyArtifact(bytes, opts())).rejects.toMatchObject({ name: 'ArtifactSignatureError' })
  })

  it('rejects another spec with SpecMismatchError, and a slot the spec lacks', async () => {
    const foreign = await buildArtifact({ identity: other, spec: otherSpec, expertId: 'x', slot: 0, version: 1, sampleCount: 1, params: initParams(otherSpec) }, { clock })
    await expect(verifyArtifact(foreign.bytes, opts())).rejects.toMatchObject({
      name: 'SpecMismatchError', message: `artifact ${foreign.hash.slice(0, 12)} (expert 'x') was built for spec ${specHash(otherSpec).slice(0, 12)}…, this federation runs ${specHash(spec).slice(0, 12)}…`
    })
    await expect(buildArtifact({ identity: other, spec, expertId: 'x', slot: 3, version: 1, sampleCount: 1, params }, { clock }))
      .rejects.toMatchObject({ name: 'SpecMismatchError', message: "slot 3 is outside this spec's 3 experts" })
  })

  it('rejects garbage and oversized input with ArtifactFormatError', async () => {
    await expect(verifyArtifact(new Uint8Array([1, 2, 3]), opts())).rejects.toMatchObject({ name: 'ArtifactFormatError', message: expect.stringMatching(/is not safetensors/) })
    await expect(verifyArtifact(good.bytes, { ...opts(), maxBytes: 100 })).rejects.toMatchObject({ name: 'ArtifactFormatError', message: `artifact of ${good.bytes.byteLength} bytes exceeds the 100-byte limit` })
    const plain = encodeSafetensors(params)
    await expect(verifyArtifact(plain, opts())).rejects.toMatchObject({ name: 'ArtifactFormatError', message: expect.stringMatching(/is not a forgemesh-expert-artifact\/1 file$/) })
  })

  it('hashes weights canonically: the manifest names the tensors exactly', () => {
    expect(good.manifest.weightsHash).toBe(weightsHash(new Map([...good.weights, ...good.router])))
  })

  it('signs revocations: only the owner, only members, no edits', async () => {
    const signed = await signRevocation({ identity: site, expertId: 'digits-01', upToVersion: 2, reason: 'consent withdrawn' }, { clock })
    expect(await verifyRevocation(signed, members)).toEqual(signed)
    await expect(verifyRevocation({ ...signed, revocation: { ...signed.revocation, upToVersion: 9 } }, members)).rejects.toMatchObject({
      name: 'ArtifactSignatureError', message: `revocation of expert 'digits-01': the signature does not verify with the key of ${site.peerId}`
    })
    const stray = await signRevocation({ identity: outsider, expertId: 'digits-01', upToVersion: 2 }, { clock })
    await expect(verifyRevocation(stray, members)).rejects.toMatchObject({ name: 'NotAMemberError' })
    await expect(verifyRevocation({ revocation: {}, signature: 'x' }, members)).rejects.toMatchObject({ name: 'ArtifactFormatError' })
  })

  it('keeps artifacts in the LevelDB registry: latest, history, withdrawal, reopen', async () => {
    const path = `${dir.path}/store`
    let store = await openSiteStore(path)
    let registry = createExpertRegistry({ store, clock })
    const v1 = await buildArtifact({ identity: site, spec, expertId: 'digits-01', slot: 1, version: 1, sampleCount: 10, params }, { clock })
    const theirs = await buildArtifact({ identity: other, spec, expertId: 'digits-23', slot: 2, version: 1, sampleCount: 10, params }, { clock })
    expect(await registry.put(v1, { from: site.peerId })).toBe(true)
    expect(await registry.put(good, { from: site.peerId })).toBe(true)
    expect(await registry.put(good, { from: other.peerId })).toBe(false)
    expect(await registry.put(theirs, { from: other.peerId })).toBe(true)
    expect((await registry.history(site.peerId, 'digits-01')).map(r => r.manifest.version)).toEqual([1, 2])
    expect((await registry.usable()).map(r => [r.manifest.expertId, r.manifest.version])).toEqual([['digits-01', 2], ['digits-23', 1]])

    const rev = await signRevocation({ identity: site, expertId: 'digits-01', upToVersion: 2 }, { clock })
    expect(await registry.withdraw(rev)).toBe(true)
    expect(await registry.withdraw(rev)).toBe(false)
    expect((await registry.usable()).map(r => r.manifest.expertId)).toEqual(['digits-23'])
    expect(await registry.isWithdrawn(good.manifest)).toBe(true)
    await registry.putShared(spec, params, 7)
    await store.close()

    store = await openSiteStore(path)
    registry = createExpertRegistry({ store, clock })
    expect((await registry.usable()).map(r => r.manifest.expertId)).toEqual(['digits-23'])
    expect(await registry.revocations()).toEqual([rev])
    const loaded = await registry.load(good.hash)
    expect(loaded.manifest).toEqual(good.manifest)
    const shared = await registry.getShared()
    expect(shared?.round).toBe(7)
    expect(Buffer.from(shared!.params.get('shared.router.w')!.data.buffer)).toEqual(Buffer.from(params.get('shared.router.w')!.data.buffer))
    // A corrupted blob is reported, never loaded.
    const bytes = (await store.getBytes('blobs', theirs.hash))!.slice()
    bytes[bytes.length - 1]! ^= 1
    await store.putBytes('blobs', theirs.hash, bytes)
    await expect(registry.load(theirs.hash)).rejects.toMatchObject({ name: 'CorruptRecordError', message: expect.stringMatching(/is corrupt/) })
    await store.close()
  })
})
