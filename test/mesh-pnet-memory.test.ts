/**
 * pnet's cipher (xsalsa20 in WebAssembly) keeps ONE memory for the whole
 * process: 64 bytes of state per cipher, then a scratch area for the data.
 * Once that memory grows, every other cipher holds a detached view and grows
 * it again on its next call, so one grow in a busy process runs into the
 * 64 MiB cap. These tests run real libp2p hosts over the in-memory transport
 * with the cipher state of a 128-site simulation (8,128 connections, 4 ciphers
 * each in one process) and check that a multi-MiB transfer, the heartbeats of
 * every other connection after it, and many reconnects all fit.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { memory } from '@libp2p/memory'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SiteIdentity } from '../node/identity.ts'
import { generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { boundedXor, pnetCiphers, PNET_MAX_XOR_BYTES } from '../node/mesh/psk.ts'
import { host, identities, tempDir, waitFor } from './mesh-helpers.ts'

interface Cipher { update: (input: Uint8Array) => Uint8Array, finalize: () => void }
type CipherClass = new (nonce: Uint8Array, key: Uint8Array) => Cipher
// The same module copy @libp2p/pnet uses (there is one in node_modules).
const XSalsa20 = createRequire(import.meta.url)('xsalsa20') as CipherClass

const BULK = '/forgemesh-test/bulk/1.0.0'
const TRANSFER_BYTES = 8 * 1024 * 1024
/** 128 sites in one process (twice the largest simulation): 128·127/2 connections, both ends here, two ciphers per end. */
const BYSTANDER_CIPHERS = 128 * 127 / 2 * 4

async function drain (stream: Stream): Promise<{ bytes: number, sha256: string }> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of stream) {
    const buf = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    hash.update(buf)
    bytes += buf.byteLength
  }
  return { bytes, sha256: hash.digest('hex') }
}

async function send (stream: Stream, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.byteLength; off += 1024 * 1024) {
    if (!stream.send(data.subarray(off, off + 1024 * 1024))) await stream.onDrain()
  }
  await stream.close()
}

describe('pnet over the in-memory transport', () => {
  const dir = tempDir('fm-pnet-')
  const psk = generatePsk()
  let ids: SiteIdentity[]
  let a: SiteHost, b: SiteHost
  const received: Array<{ bytes: number, sha256: string }> = []

  beforeAll(async () => {
    ids = await identities(dir.path, 2)
    const allowlist = ids.map(i => i.peerId)
    a = host(ids[0]!, { psk, allowlist, listen: ['/memory/fm-pnet-a'], transports: [memory()] })
    b = host(ids[1]!, { psk, allowlist, listen: ['/memory/fm-pnet-b'], transports: [memory()] })
    await a.start()
    await b.start()
    await b.libp2p()!.handle(BULK, async (stream) => {
      received.push(await drain(stream))
      await stream.close()
    })
  })

  afterAll(async () => {
    await a?.stop()
    await b?.stop()
    dir.remove()
  })

  it('splitting a buffer before the cipher leaves the keystream unchanged', () => {
    const nonce = randomBytes(24)
    const key = randomBytes(32)
    const data = randomBytes(3 * PNET_MAX_XOR_BYTES + 1000)
    const whole = new XSalsa20(nonce, key)
    const expected = Buffer.from(whole.update(data))
    const bounded = boundedXor(new XSalsa20(nonce, key), () => {})
    // Odd piece sizes cross the cipher's 64-byte blocks at every offset.
    const got = Buffer.concat([bounded.update(data.subarray(0, 77)), bounded.update(data.subarray(77))])
    expect(got.equals(expected)).toBe(true)
    whole.finalize()
    bounded.release()
    expect(bounded.update(data).byteLength).toBe(0)
  })

  it('moves 8 MiB intact while the process holds the ciphers of 128 sites, and every cipher still works after', async () => {
    const bystanders: Cipher[] = []
    try {
      for (let i = 0; i < BYSTANDER_CIPHERS; i++) bystanders.push(new XSalsa20(randomBytes(24), randomBytes(32)))
      const data = randomBytes(TRANSFER_BYTES)
      const stream = await a.libp2p()!.dialProtocol(multiaddr(`/memory/fm-pnet-b/p2p/${ids[1]!.peerId}`), BULK)
      await send(stream, data)
      await waitFor('the transfer to arrive', () => received.length === 1, 30_000)
      expect(received[0]).toEqual({ bytes: TRANSFER_BYTES, sha256: createHash('sha256').update(data).digest('hex') })
      // Every other connection sends a heartbeat: a grown memory would make each of them grow it again.
      const beat = new Uint8Array(64)
      for (const cipher of bystanders) expect(cipher.update(beat).byteLength).toBe(64)
    } finally {
      for (const cipher of bystanders) cipher.finalize()
    }
  })

  it('gives a closed connection\'s cipher state back, so reconnects do not pile it up', async () => {
    const peerB = multiaddr(`/memory/fm-pnet-b/p2p/${ids[1]!.peerId}`)
    await waitFor('a and b connected', () => a.connectedPeers().length === 1)
    const connected = pnetCiphers().live
    // Slot of a fresh cipher: the library's allocation high-water mark (white-box: it is what grows).
    const slot = (): number => { const c = new XSalsa20(randomBytes(24), randomBytes(32)) as Cipher & { _xor: { _pointer: number } }; const p = c._xor._pointer; c.finalize(); return p }
    const before = slot()
    for (let i = 0; i < 40; i++) {
      await a.libp2p()!.hangUp(peerB)
      await waitFor('a and b apart', () => a.connectedPeers().length === 0 && b.connectedPeers().length === 0)
      await waitFor('ciphers given back', () => pnetCiphers().live === connected - 4)
      await a.libp2p()!.dial(peerB)
      await waitFor('a and b connected', () => pnetCiphers().live === connected)
    }
    expect(slot()).toBeLessThanOrEqual(before + 4 * 64)
    expect(pnetCiphers().capacity).toBeGreaterThan(BYSTANDER_CIPHERS + pnetCiphers().live)
  })
})
