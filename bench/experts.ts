/**
 * Expert artifacts: what signing, verification and the exchange cost on top
 * of moving the bytes. Baselines in the same run: sha256 of the same bytes
 * (for build and verify), and a bare fetchBlob of the same blob between the
 * same two hosts (for publish -> announce -> fetch -> verify -> store).
 * `npm run bench -- experts [MiB]` (default 32 MiB of expert weights).
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSilentLogger } from '../coordinator/components.ts'
import { systemClock } from '../node/components.ts'
import { buildArtifact, memberKeys, verifyArtifact } from '../node/experts/artifact.ts'
import { createExpertExchange } from '../node/experts/exchange.ts'
import { createExpertRegistry } from '../node/experts/registry.ts'
import { loadOrCreateIdentity } from '../node/identity.ts'
import { createSiteHost, generatePsk } from '../node/mesh/host.ts'
import { fetchBlob, memoryBlobSource, serveBlobs } from '../node/mesh/transfer.ts'
import { initParams } from '../node/model/params.ts'
import { parseMoeSpec, specHash } from '../node/model/spec.ts'
import { openSiteStore } from '../node/store.ts'
import type { BenchContext, Figures } from './run.ts'

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6
const round = (x: number): number => Math.round(x * 1000) / 1000

async function until (check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise(resolve => setTimeout(resolve, 2))
  }
}

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const mib = Number(ctx.args[0] ?? 32)
  // Expert size ~ 2 * width * hidden * 4 bytes.
  const width = 256
  const hidden = Math.max(1, Math.round(mib * 1024 * 1024 / (2 * width * 4)))
  const spec = parseMoeSpec({ inputDim: 16, width, expertHidden: hidden, experts: 2, topK: 1, classes: 4, seed: 1 })
  const params = initParams(spec)
  const dir = mkdtempSync(join(tmpdir(), 'fm-bench-experts-'))
  const quiet = createSilentLogger()
  try {
    const [a, b] = [await loadOrCreateIdentity(join(dir, 'a.key')), await loadOrCreateIdentity(join(dir, 'b.key'))]
    const members = memberKeys([a.peerId, b.peerId])

    let t0 = process.hrtime.bigint()
    const artifact = await buildArtifact({ identity: a, spec, expertId: 'e', slot: 0, version: 1, sampleCount: 1, params }, { clock: systemClock })
    const buildMs = ms(t0)
    t0 = process.hrtime.bigint()
    createHash('sha256').update(artifact.bytes).digest()
    const shaMs = ms(t0)
    t0 = process.hrtime.bigint()
    await verifyArtifact(artifact.bytes, { members, specHash: specHash(spec), spec, expectedHash: artifact.hash })
    const verifyMs = ms(t0)
    const bytes = artifact.bytes.byteLength
    ctx.print(`artifact ${(bytes / 2 ** 20).toFixed(1)} MiB: build+sign ${buildMs.toFixed(0)} ms, verify ${verifyMs.toFixed(0)} ms, sha256 alone ${shaMs.toFixed(0)} ms`)

    const psk = generatePsk()
    const allowlist = [a.peerId, b.peerId]
    const storeA = await openSiteStore(join(dir, 'sa'))
    const storeB = await openSiteStore(join(dir, 'sb'))
    const hostA = createSiteHost({ identity: a, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], allowlist, psk }, { logger: quiet, clock: systemClock })
    const exA = createExpertExchange({ spec, members }, { host: hostA, identity: a, registry: createExpertRegistry({ store: storeA, clock: systemClock }), clock: systemClock, logger: quiet })
    await exA.start()
    await hostA.start()
    const hostB = createSiteHost({ identity: b, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [hostA.multiaddrs()[0]!], allowlist, psk }, { logger: quiet, clock: systemClock })
    const exB = createExpertExchange({ spec, members }, { host: hostB, identity: b, registry: createExpertRegistry({ store: storeB, clock: systemClock }), clock: systemClock, logger: quiet })
    await exB.start()
    await hostB.start()
    await until(() => hostA.connectedPeers().length === 1, 15_000)

    // Baseline: the same bytes, bare transfer over the same link (B's artifact handler is replaced; B only fetches below).
    await serveBlobs(hostB, memoryBlobSource(new Map([[artifact.hash, artifact.bytes]])))
    t0 = process.hrtime.bigint()
    await fetchBlob(hostA, b.peerId, artifact.hash)
    const rawMs = ms(t0)

    let stored = false
    exB.on('stored', () => { stored = true })
    t0 = process.hrtime.bigint()
    await exA.publish({ expertId: 'e', slot: 0, version: 2, parentVersion: 1, sampleCount: 1, params })
    await until(() => stored, 120_000)
    const exchangeMs = ms(t0)
    ctx.print(`over loopback libp2p: bare fetchBlob ${rawMs.toFixed(0)} ms (${(bytes / 2 ** 20 / (rawMs / 1000)).toFixed(0)} MiB/s); publish -> stored at the peer ${exchangeMs.toFixed(0)} ms`)

    await exA.stop(); await exB.stop(); await hostA.stop(); await hostB.stop(); await storeA.close(); await storeB.close()
    return {
      artifact_bytes: bytes,
      build_sign_ms: round(buildMs),
      verify_ms: round(verifyMs),
      sha256_ms: round(shaMs),
      verify_vs_sha256: round(verifyMs / shaMs),
      raw_fetch_ms: round(rawMs),
      publish_to_stored_ms: round(exchangeMs),
      exchange_vs_raw_fetch: round(exchangeMs / rawMs)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
