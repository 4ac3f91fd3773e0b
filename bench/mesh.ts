/**
 * 100 MB of named tensors through the mesh, against baselines measured in the
 * same run over the same two hosts: the same number of bytes through a raw
 * libp2p stream (same tcp + pnet + Noise + yamux stack, no frames, no codec,
 * the receiver only counts the bytes) and through plain node:net TCP.
 * The update path counts everything a real update pays: encode, its sha256
 * (on 1.1.0 taken slice by slice while the body is written, and sent after
 * it), frames, the wire, hash check and decode at the receiver, the ack.
 * The receiver hands each update's buffer back once it is done with it, as a
 * site does after folding an update into its round (node/site/site.ts), so
 * from the second update on the frame lands in warm memory, across trials
 * here as across rounds there; `update_unreleased` is the same update whose
 * consumer never hands it back (fresh receive memory every time).
 * The same update over protocol 1.0.0 (sha256 of the whole body before its
 * first byte, in the header) runs in the same trials, as the before figure.
 * `update_prepared` sends what a member really sends (node/site/member.ts):
 * a body it encoded and hashed once when it prepared the round's update, its
 * hash named in the header; the encode and hash are outside the timing there,
 * so it is a figure beside the headline, not the headline.
 * The artifact path fetches the encoded body in 1 MiB chunks, hash-verified,
 * into memory. Also: encode/decode MB/s of each dtype (MB of float32 input).
 *
 * By default the receiving site runs in a child process, as a second site
 * does in a deployment: each side has its own event loop, for the baselines
 * exactly as for our paths. `--same-process` puts both hosts on one event
 * loop instead (every CPU cost of both sides then adds up).
 * Trials are interleaved path by path in a rotating order, so load from other
 * jobs hits every path alike; every figure is the median over the trials.
 *
 *   npm run bench -- mesh [--mb 100] [--trials 7] [--same-process]
 */
import '../node/runtime.ts'
import { fork } from 'node:child_process'
import { createHash } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createServer, connect, type AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { systemClock } from '../node/components.ts'
import { loadOrCreateIdentity } from '../node/identity.ts'
import { createSiteHost, generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { fetchBlob, memoryBlobSource, serveBlobs } from '../node/mesh/transfer.ts'
import { createUpdateService, type OutgoingUpdate, type UpdateService } from '../node/mesh/update.ts'
import { decodeTensors, encodeTensorParts, encodeTensors } from '../protocols/tensor-codec/index.ts'
import { UPDATE_PROTOCOL_1_0 } from '../protocols/update/constants.ts'
import { UpdateAck } from '../protocols/update/update.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import type { BenchContext, Figures } from './run.ts'

const RAW_PROTOCOL = '/forgemesh/bench-raw/1.0.0'
/** Set in the environment of the child process that plays the receiving site. */
const PEER_ENV = 'FORGEMESH_BENCH_MESH_PEER'

interface PeerSetup { dir: string, psk: string, mb: number }
interface PeerInfo { peerId: string, address: string, tcpPort: number, artifactHash: string, artifactBytes: number }

function arg (args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? Number(args[i + 1]) : fallback
}

function tensorsOf (totalBytes: number): TensorMap {
  const rng = createSeededRandom('bench/mesh')
  const perTensor = 1 << 20 // 4 MiB of float32 each
  const map: TensorMap = new Map()
  for (let i = 0, left = totalBytes / 4; left > 0; i++) {
    const n = Math.min(perTensor, left)
    const data = new Float32Array(n)
    for (let j = 0; j < n; j++) data[j] = rng.normal() * 0.01
    map.set(`layer${String(i).padStart(3, '0')}.w`, { shape: [n], data })
    left -= n
  }
  return map
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const elapsed = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6
const identities = async (dir: string) => [await loadOrCreateIdentity(join(dir, 'a.key')), await loadOrCreateIdentity(join(dir, 'b.key'))] as const

/** The receiving site: update receiver, artifact server, raw sink, TCP sink. */
async function startPeer (setup: PeerSetup): Promise<{ info: PeerInfo, stop: () => Promise<void> }> {
  const [ia, ib] = await identities(setup.dir)
  const logger = createSilentLogger('forgemesh:mesh')
  const host = createSiteHost({ identity: ia, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], psk: Buffer.from(setup.psk, 'hex'), allowlist: [ia.peerId, ib.peerId] }, { logger, clock: systemClock })
  const updates = createUpdateService({}, { host, logger })
  // A real site folds the update into its own arrays and hands the receive
  // buffer back (node/site/site.ts), so the next round's update lands in warm
  // memory; an update sent with meta.keep is kept instead, as by a consumer
  // that never releases: its buffer is fresh memory every time (the before figure).
  updates.onUpdate((u) => {
    if (u.header.meta?.['keep'] !== true) u.release()
    return { accepted: true }
  })
  await updates.start()
  const artifact = encodeTensors(tensorsOf(setup.mb * 1_000_000), { dtype: 'f32' })
  const artifactHash = createHash('sha256').update(artifact).digest('hex')
  await serveBlobs(host, memoryBlobSource(new Map([[artifactHash, artifact]])))
  await host.start()
  await host.libp2p()!.handle(RAW_PROTOCOL, async (stream) => {
    let got = 0
    for await (const chunk of stream) got += chunk.byteLength
    stream.send(new Uint8Array([got > 0 ? 1 : 0]))
    await stream.close()
  }, { maxInboundStreams: 8 })
  const tcp = createServer((socket) => {
    let got = 0
    socket.on('data', (d) => {
      got += d.byteLength
      if (got >= setup.mb * 1_000_000) socket.end(Buffer.from([1]))
    })
  })
  await new Promise<void>(resolve => tcp.listen(0, '127.0.0.1', resolve))
  const info: PeerInfo = { peerId: host.peerId, address: host.multiaddrs()[0]!, tcpPort: (tcp.address() as AddressInfo).port, artifactHash, artifactBytes: artifact.byteLength }
  return {
    info,
    stop: async () => {
      await host.stop()
      await new Promise(resolve => tcp.close(resolve))
    }
  }
}

/** The receiving site in a child process; resolves once it listens. */
async function forkPeer (setup: PeerSetup): Promise<{ info: PeerInfo, stop: () => Promise<void> }> {
  const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, [PEER_ENV]: JSON.stringify(setup) }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
  const info = await new Promise<PeerInfo>((resolve, reject) => {
    child.once('message', (m) => { resolve(m as PeerInfo) })
    child.once('exit', (code) => { reject(new Error(`bench peer exited with code ${code} before it listened`)) })
  })
  return { info, stop: async () => { child.send('stop'); await exited } }
}

if (process.env[PEER_ENV] !== undefined) {
  const peer = await startPeer(JSON.parse(process.env[PEER_ENV]) as PeerSetup)
  process.send!(peer.info)
  process.once('message', () => { void peer.stop().then(() => process.exit(0)) })
}

/** Sends `bytes` over a raw stream in 1 MiB writes; the handler answers one byte once it has all. */
async function rawLibp2p (client: SiteHost, peerId: string, bytes: number): Promise<number> {
  const chunk = new Uint8Array(1 << 20).fill(7)
  const t0 = process.hrtime.bigint()
  const stream = await client.libp2p()!.dialProtocol(peerIdFromString(peerId), RAW_PROTOCOL)
  const done = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', () => { resolve() })
    stream.addEventListener('close', (e) => { if (e.error !== undefined) reject(e.error) })
  })
  for (let sent = 0; sent < bytes; sent += chunk.byteLength) {
    if (!stream.send(chunk.subarray(0, Math.min(chunk.byteLength, bytes - sent)))) await stream.onDrain()
  }
  await stream.close()
  await done
  return elapsed(t0)
}

async function plainTcp (port: number, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(1 << 20, 7)
  const t0 = process.hrtime.bigint()
  const socket = connect(port, '127.0.0.1')
  await new Promise<void>(resolve => socket.once('connect', resolve))
  const done = new Promise<void>(resolve => socket.once('data', () => { resolve() }))
  for (let sent = 0; sent < bytes; sent += chunk.byteLength) {
    if (!socket.write(chunk.subarray(0, Math.min(chunk.byteLength, bytes - sent)))) await new Promise(resolve => socket.once('drain', resolve))
  }
  await done
  const ms = elapsed(t0)
  socket.destroy()
  return ms
}

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const mb = arg(ctx.args, 'mb', 100)
  const trials = arg(ctx.args, 'trials', 7)
  const sameProcess = ctx.args.includes('--same-process')
  const bytes = mb * 1_000_000
  const map = tensorsOf(bytes)
  const mbOf = (b: number, ms: number): number => Math.round(b / 1e6 / (ms / 1000) * 10) / 10
  const ratio = (x: number, y: number): number => Math.round(x / y * 1000) / 1000

  // Codec speed per dtype, median of `trials` runs each.
  const codec: Record<string, { encode_mb_s: number, decode_mb_s: number, wire_bytes: number }> = {}
  for (const dtype of ['f32', 'f16', 'int8'] as const) {
    let body: Uint8Array = new Uint8Array(0)
    const enc: number[] = []
    const dec: number[] = []
    for (let i = 0; i < trials; i++) {
      let t0 = process.hrtime.bigint()
      body = encodeTensors(map, { dtype })
      enc.push(elapsed(t0))
      t0 = process.hrtime.bigint()
      decodeTensors(body)
      dec.push(elapsed(t0))
    }
    codec[dtype] = { encode_mb_s: mbOf(bytes, median(enc)), decode_mb_s: mbOf(bytes, median(dec)), wire_bytes: body.byteLength }
    ctx.print(`codec ${dtype.padEnd(4)} encode ${codec[dtype].encode_mb_s} MB/s  decode ${codec[dtype].decode_mb_s} MB/s  (${body.byteLength} bytes on the wire)`)
  }

  const dir = mkdtempSync(join(tmpdir(), 'fm-bench-mesh-'))
  const setup: PeerSetup = { dir, psk: Buffer.from(generatePsk()).toString('hex'), mb }
  const [ia, ib] = await identities(dir)
  const peer = sameProcess ? await startPeer(setup) : await forkPeer(setup)
  const { info } = peer
  const logger = createSilentLogger('forgemesh:mesh')
  // When the first body byte of an update left: how long the sender kept the wire idle first.
  let firstBody = -1n
  const wireTap = (direction: 'in' | 'out', _peer: string, protocol: string, bytes: Uint8Array): void => {
    if (direction === 'out' && firstBody < 0n && protocol.startsWith('/forgemesh/update/') && bytes.byteLength >= 1 << 20) firstBody = process.hrtime.bigint()
  }
  const client = createSiteHost({ identity: ib, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], psk: Buffer.from(setup.psk, 'hex'), allowlist: [ia.peerId, ib.peerId] }, { logger, clock: systemClock, wireTap })
  const idle: Record<string, number[]> = { update: [], update_1_0: [] }
  const firstByteAfter = (path: string, t0: bigint): void => { idle[path]!.push(Number(firstBody - t0) / 1e6); firstBody = -1n }
  const sender = createUpdateService({}, { host: client, logger })
  // The same sender hashing every slice on its own event loop (no worker thread).
  const inlineSender = createUpdateService({ hashWorkerMinBytes: false }, { host: client, logger })
  await client.start()

  const prepared = encodeTensors(map, { dtype: 'f32' })
  /** One update through `service`, timed to its ack; `idlePath` records how long the wire stayed idle before its first MiB. */
  const timedSend = async (service: UpdateService, update: Pick<OutgoingUpdate, 'tensors' | 'body' | 'meta'>, idlePath?: string): Promise<number> => {
    const t0 = process.hrtime.bigint()
    const ack = await service.send(info.peerId, { round: 0, site: 'bench', dtype: 'f32', ...update }, { timeoutMs: 600_000 })
    if (!ack.accepted) throw new Error('update refused')
    if (idlePath !== undefined) firstByteAfter(idlePath, t0)
    else firstBody = -1n
    return elapsed(t0)
  }
  try {
    await client.libp2p()!.dial(multiaddr(info.address))
    const paths: Record<string, () => Promise<number>> = {
      tcp: async () => await plainTcp(info.tcpPort, bytes),
      raw: async () => await rawLibp2p(client, info.peerId, info.artifactBytes),
      update: async () => await timedSend(sender, { tensors: map }, 'update'),
      // What a member sends (node/site/member.ts): the body it encoded, and hashed, once when it prepared the round's update.
      update_prepared: async () => await timedSend(sender, { body: prepared }),
      update_inline_hash: async () => await timedSend(inlineSender, { tensors: map }),
      // The same update into fresh memory: the receiver never releases it.
      update_unreleased: async () => await timedSend(sender, { tensors: map, meta: { keep: true } }),
      // What a 1.0.0 sender does: hash the whole body, then send it with the hash in the header.
      update_1_0: async () => {
        const t0 = process.hrtime.bigint()
        const body = encodeTensorParts(map, { dtype: 'f32' })
        const res = await client.request(info.peerId, UPDATE_PROTOCOL_1_0, { header: { kind: 'update', round: 0, site: 'bench', dtype: 'f32', bodyHash: body.hash }, body: body.parts }, { schema: UpdateAck, timeoutMs: 600_000 })
        if (!res.header.accepted) throw new Error('update refused')
        firstByteAfter('update_1_0', t0)
        return elapsed(t0)
      },
      artifact: async () => {
        const t0 = process.hrtime.bigint()
        const r = await fetchBlob(client, info.peerId, info.artifactHash, {})
        if (r.size !== info.artifactBytes) throw new Error('short artifact')
        return elapsed(t0)
      }
    }
    const names = Object.keys(paths)
    // Warm-up: yamux window growth, JIT, and one of each path.
    for (const name of names) await paths[name]!()
    const ms: Record<string, number[]> = Object.fromEntries(names.map(n => [n, []]))
    for (let i = 0; i < trials; i++) {
      for (let k = 0; k < names.length; k++) {
        const name = names[(i + k) % names.length]!
        ms[name]!.push(await paths[name]!())
      }
    }
    const f = {
      update_mb_s: mbOf(bytes, median(ms.update!)),
      update_1_0_mb_s: mbOf(bytes, median(ms.update_1_0!)),
      update_prepared_mb_s: mbOf(bytes, median(ms.update_prepared!)),
      update_unreleased_mb_s: mbOf(bytes, median(ms.update_unreleased!)),
      update_inline_hash_mb_s: mbOf(bytes, median(ms.update_inline_hash!)),
      artifact_mb_s: mbOf(bytes, median(ms.artifact!)),
      libp2p_raw_mb_s: mbOf(info.artifactBytes, median(ms.raw!)),
      tcp_mb_s: mbOf(bytes, median(ms.tcp!))
    }
    // The same ratio per trial (paths of one trial ran back to back), then its median.
    const paired = (path: string): number => ratio(median(ms[path]!.map((t, i) => (bytes / t) / (info.artifactBytes / ms.raw![i]!))), 1)
    ctx.print(`topology      ${sameProcess ? 'both hosts in one process' : 'receiving site in a child process'}; ${trials} interleaved trials, medians`)
    ctx.print(`update path   ${f.update_mb_s} MB/s (1.1.0: encode + frames + hash while sending + pnet/Noise/yamux + verify + decode + ack)`)
    ctx.print(`update 1.0.0  ${f.update_1_0_mb_s} MB/s (the same, hashed whole before the first byte)`)
    ctx.print(`update prep.  ${f.update_prepared_mb_s} MB/s (1.1.0, a body encoded and hashed beforehand, as a member prepares its round's update: hash named in the header)`)
    ctx.print(`update kept   ${f.update_unreleased_mb_s} MB/s (1.1.0, the receiver never releases: fresh receive memory each time)`)
    ctx.print(`update inline ${f.update_inline_hash_mb_s} MB/s (1.1.0, the sender hashes on its event loop, no worker thread)`)
    ctx.print(`first 1 MiB of body left after ${median(idle.update!).toFixed(1)} ms (1.1.0) vs ${median(idle.update_1_0!).toFixed(1)} ms (1.0.0)`)
    ctx.print(`artifact path ${f.artifact_mb_s} MB/s (1 MiB chunks, sha256-verified, into memory)`)
    ctx.print(`raw libp2p    ${f.libp2p_raw_mb_s} MB/s (same stack, bare stream)`)
    ctx.print(`plain TCP     ${f.tcp_mb_s} MB/s`)
    ctx.print(`per trial ms  ${names.map(n => `${n} ${ms[n]!.map(Math.round).join(' ')}`).join(' | ')}`)
    return {
      mb,
      trials,
      topology: sameProcess ? 'one-process' : 'two-processes',
      ...f,
      ratio_vs_libp2p_raw: ratio(f.update_mb_s, f.libp2p_raw_mb_s),
      update_1_0_ratio_vs_libp2p_raw: ratio(f.update_1_0_mb_s, f.libp2p_raw_mb_s),
      update_prepared_ratio_vs_libp2p_raw: ratio(f.update_prepared_mb_s, f.libp2p_raw_mb_s),
      update_unreleased_ratio_vs_libp2p_raw: ratio(f.update_unreleased_mb_s, f.libp2p_raw_mb_s),
      update_inline_hash_ratio_vs_libp2p_raw: ratio(f.update_inline_hash_mb_s, f.libp2p_raw_mb_s),
      artifact_ratio_vs_libp2p_raw: ratio(f.artifact_mb_s, f.libp2p_raw_mb_s),
      ratio_vs_tcp: ratio(f.update_mb_s, f.tcp_mb_s),
      libp2p_raw_vs_tcp: ratio(f.libp2p_raw_mb_s, f.tcp_mb_s),
      paired_ratio_vs_libp2p_raw: paired('update'),
      paired_update_1_0_ratio_vs_libp2p_raw: paired('update_1_0'),
      paired_update_prepared_ratio_vs_libp2p_raw: paired('update_prepared'),
      paired_update_unreleased_ratio_vs_libp2p_raw: paired('update_unreleased'),
      paired_update_inline_hash_ratio_vs_libp2p_raw: paired('update_inline_hash'),
      paired_artifact_ratio_vs_libp2p_raw: paired('artifact'),
      first_body_mib_ms: { update: Math.round(median(idle.update!) * 10) / 10, update_1_0: Math.round(median(idle.update_1_0!) * 10) / 10 },
      trial_ms: Object.fromEntries(names.map(n => [n, ms[n]!.map(Math.round)])),
      codec
    }
  } finally {
    await client.stop()
    await peer.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
