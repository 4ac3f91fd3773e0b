/**
 * 100 MB of named tensors through the mesh, against two baselines measured in
 * the same run: the same bytes through a raw libp2p stream (same tcp + pnet +
 * Noise + yamux stack, no frames, no codec) and through plain node:net TCP.
 * The update path counts everything a real update pays: encode (with its
 * sha256), frames, the wire, hash check and decode at the receiver, the ack.
 * The artifact path fetches the encoded body in 1 MiB chunks, hash-verified.
 * Also: encode/decode MB/s of each dtype (MB of float32 input per second).
 *
 *   npm run bench -- mesh [--mb 100] [--trials 3]
 */
import { createHash } from 'node:crypto'
import { createServer, connect, type AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { systemClock } from '../node/components.ts'
import { loadOrCreateIdentity } from '../node/identity.ts'
import { createSiteHost, generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { fetchBlob, memoryBlobSource, serveBlobs } from '../node/mesh/transfer.ts'
import { createUpdateService } from '../node/mesh/update.ts'
import { decodeTensors, encodeTensors } from '../protocols/tensor-codec/index.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import type { BenchContext, Figures } from './run.ts'

const RAW_PROTOCOL = '/forgemesh/bench-raw/1.0.0'

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

async function best (trials: number, fn: () => Promise<number>): Promise<number> {
  let ms = Infinity
  for (let i = 0; i < trials; i++) ms = Math.min(ms, await fn())
  return ms
}

const elapsed = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6

/** Sends `bytes` over a raw stream in 1 MiB writes; the handler answers one byte once it has all. */
async function rawLibp2p (client: SiteHost, server: SiteHost, bytes: number): Promise<number> {
  const chunk = new Uint8Array(1 << 20).fill(7)
  const t0 = process.hrtime.bigint()
  const stream = await client.libp2p()!.dialProtocol(server.libp2p()!.peerId, RAW_PROTOCOL)
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

async function plainTcp (bytes: number): Promise<number> {
  const server = createServer((socket) => {
    let got = 0
    socket.on('data', (d) => {
      got += d.byteLength
      if (got >= bytes) socket.end(Buffer.from([1]))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
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
  await new Promise(resolve => server.close(resolve))
  return ms
}

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const mb = arg(ctx.args, 'mb', 100)
  const trials = arg(ctx.args, 'trials', 3)
  const bytes = mb * 1_000_000
  const map = tensorsOf(bytes)
  const mbOf = (b: number, ms: number): number => Math.round(b / 1e6 / (ms / 1000) * 10) / 10

  // Codec speed per dtype.
  const codec: Record<string, { encode_mb_s: number, decode_mb_s: number, wire_bytes: number }> = {}
  for (const dtype of ['f32', 'f16', 'int8'] as const) {
    let body: Uint8Array = new Uint8Array(0)
    const enc = await best(trials, async () => { const t0 = process.hrtime.bigint(); body = encodeTensors(map, { dtype }); return elapsed(t0) })
    const dec = await best(trials, async () => { const t0 = process.hrtime.bigint(); decodeTensors(body); return elapsed(t0) })
    codec[dtype] = { encode_mb_s: mbOf(bytes, enc), decode_mb_s: mbOf(bytes, dec), wire_bytes: body.byteLength }
    ctx.print(`codec ${dtype.padEnd(4)} encode ${codec[dtype].encode_mb_s} MB/s  decode ${codec[dtype].decode_mb_s} MB/s  (${body.byteLength} bytes on the wire)`)
  }

  const dir = mkdtempSync(join(tmpdir(), 'fm-bench-mesh-'))
  const psk = generatePsk()
  const [ia, ib] = [await loadOrCreateIdentity(join(dir, 'a.key')), await loadOrCreateIdentity(join(dir, 'b.key'))]
  const allowlist = [ia.peerId, ib.peerId]
  const components = { logger: createSilentLogger('forgemesh:mesh'), clock: systemClock }
  const server = createSiteHost({ identity: ia, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], psk, allowlist }, components)
  const updates = createUpdateService({}, { host: server, logger: components.logger })
  updates.onUpdate(() => ({ accepted: true }))
  await updates.start()
  const artifactBody = encodeTensors(map, { dtype: 'f32' })
  const artifactHash = createHash('sha256').update(artifactBody).digest('hex')
  await serveBlobs(server, memoryBlobSource(new Map([[artifactHash, artifactBody]])))
  await server.start()
  await server.libp2p()!.handle(RAW_PROTOCOL, async (stream) => {
    let got = 0
    for await (const chunk of stream) got += chunk.byteLength
    stream.send(new Uint8Array([got > 0 ? 1 : 0]))
    await stream.close()
  }, { maxInboundStreams: 8 })
  const client = createSiteHost({ identity: ib, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [server.multiaddrs()[0]!], psk, allowlist }, components)
  const sender = createUpdateService({}, { host: client, logger: components.logger })
  await client.start()
  await client.libp2p()!.dial(server.libp2p()!.getMultiaddrs()[0]!)

  try {
    // Interleave the paths trial by trial so load drift hits them alike.
    let rawMs = Infinity, updMs = Infinity, artMs = Infinity, tcpMs = Infinity
    await rawLibp2p(client, server, 8 * 1_000_000) // warm-up: window growth, JIT
    for (let i = 0; i < trials; i++) {
      tcpMs = Math.min(tcpMs, await plainTcp(bytes))
      rawMs = Math.min(rawMs, await rawLibp2p(client, server, artifactBody.byteLength))
      updMs = Math.min(updMs, await (async () => {
        const t0 = process.hrtime.bigint()
        const ack = await sender.send(server.peerId, { round: i, site: 'bench', dtype: 'f32', tensors: map }, { timeoutMs: 600_000 })
        if (!ack.accepted) throw new Error('update refused')
        return elapsed(t0)
      })())
      artMs = Math.min(artMs, await (async () => {
        const t0 = process.hrtime.bigint()
        const r = await fetchBlob(client, server.peerId, artifactHash, {})
        if (r.size !== artifactBody.byteLength) throw new Error('short artifact')
        return elapsed(t0)
      })())
    }
    const f = {
      update_mb_s: mbOf(bytes, updMs),
      artifact_mb_s: mbOf(bytes, artMs),
      libp2p_raw_mb_s: mbOf(artifactBody.byteLength, rawMs),
      tcp_mb_s: mbOf(bytes, tcpMs)
    }
    const ratio = (x: number, y: number): number => Math.round(x / y * 1000) / 1000
    ctx.print(`update path   ${f.update_mb_s} MB/s (encode + frames + pnet/Noise/yamux + verify + decode + ack)`)
    ctx.print(`artifact path ${f.artifact_mb_s} MB/s (1 MiB chunks, sha256-verified)`)
    ctx.print(`raw libp2p    ${f.libp2p_raw_mb_s} MB/s (same stack, bare stream)`)
    ctx.print(`plain TCP     ${f.tcp_mb_s} MB/s`)
    return {
      mb,
      trials,
      ...f,
      ratio_vs_libp2p_raw: ratio(f.update_mb_s, f.libp2p_raw_mb_s),
      artifact_ratio_vs_libp2p_raw: ratio(f.artifact_mb_s, f.libp2p_raw_mb_s),
      ratio_vs_tcp: ratio(f.update_mb_s, f.tcp_mb_s),
      libp2p_raw_vs_tcp: ratio(f.libp2p_raw_mb_s, f.tcp_mb_s),
      codec
    }
  } finally {
    await client.stop()
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
