/**
 * Chunked, resumable transfer on real libp2p over loopback: a 100 MB blob
 * whose connection is killed mid-way resumes from its offset on a new
 * connection and lands with the identical hash; a transfer abandoned by its
 * caller resumes later from the .part file it left.
 */
import { createHash } from 'node:crypto'
import { createReadStream, existsSync, openSync, writeSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { fetchBlob, fileBlobSource, fileSink, serveBlobs } from '../node/mesh/transfer.ts'
import { host, identities, tempDir, waitFor } from './mesh-helpers.ts'

const MB = 1_000_000

/** Writes `bytes` seeded pseudo-random bytes to `path`; returns their sha256. */
function writeBlob (path: string, bytes: number, seed: number): string {
  const rng = createSeededRandom(seed)
  const hash = createHash('sha256')
  const fd = openSync(path, 'w')
  const chunk = new Uint32Array(1 << 20)
  for (let left = bytes; left > 0;) {
    for (let i = 0; i < chunk.length; i++) chunk[i] = rng.int(2 ** 32)
    const view = new Uint8Array(chunk.buffer, 0, Math.min(chunk.byteLength, left))
    writeSync(fd, view)
    hash.update(view)
    left -= view.byteLength
  }
  closeSync(fd)
  return hash.digest('hex')
}

async function fileHash (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

describe('resumable blob transfer', () => {
  const dir = tempDir('fm-transfer-')
  const psk = generatePsk()
  let server: SiteHost, client: SiteHost
  let bigHash: string, smallHash: string
  const served: Array<{ hash: string, offset: number }> = []
  let source: ReturnType<typeof fileBlobSource>

  beforeAll(async () => {
    const [si, ci] = await identities(dir.path, 2)
    const allowlist = [si!.peerId, ci!.peerId]
    bigHash = writeBlob(join(dir.path, 'big.bin'), 100 * MB, 1)
    smallHash = writeBlob(join(dir.path, 'small.bin'), 8 * MB + 123, 2)
    server = host(si!, { psk, allowlist })
    source = fileBlobSource(new Map([[bigHash, join(dir.path, 'big.bin')], [smallHash, join(dir.path, 'small.bin')]]))
    await serveBlobs(server, source, { onServe: (e) => { served.push({ hash: e.hash, offset: e.offset }) } })
    await server.start()
    client = host(ci!, { psk, allowlist, bootstrap: [server.multiaddrs()[0]!] })
    await client.start()
    await waitFor('client to connect', () => client.connectedPeers().includes(server.peerId))
  })

  afterAll(async () => {
    await client?.stop()
    await server?.stop()
    await source?.close()
    dir.remove()
  })

  it('resumes a 100 MB transfer on a new connection after its connection is killed, with the identical hash', async () => {
    const out = join(dir.path, 'big.out')
    let killedAt = -1
    const connectionIds = new Set<string>()
    const result = await fetchBlob(client, server.peerId, bigHash, {
      sink: fileSink(out),
      retry: { initialMs: 20, maxMs: 200 },
      onProgress: ({ received }) => {
        for (const c of client.libp2p()!.getConnections()) connectionIds.add(c.id)
        if (killedAt < 0 && received >= 40 * MB) {
          killedAt = received
          for (const c of client.libp2p()!.getConnections(server.libp2p()!.peerId)) c.abort(new Error('killed by the test'))
        }
      }
    })
    expect(killedAt).toBeGreaterThanOrEqual(40 * MB)
    expect(result).toMatchObject({ hash: bigHash, size: 100 * MB, attempts: 2 })
    expect(result.resumedFrom).toHaveLength(1)
    expect(result.resumedFrom[0]).toBeGreaterThanOrEqual(killedAt)
    expect(result.resumedFrom[0]).toBeLessThan(100 * MB)
    // The server was asked from 0, then from exactly where the client stood: nothing was fetched twice.
    expect(served.filter(s => s.hash === bigHash).map(s => s.offset)).toEqual([0, result.resumedFrom[0]])
    expect(connectionIds.size).toBe(2)
    expect(existsSync(`${out}.part`)).toBe(false)
    expect(await fileHash(out)).toBe(bigHash)
  })

  it('resumes from the .part file a cancelled fetch left behind', async () => {
    const out = join(dir.path, 'small.out')
    const stop = new AbortController()
    const first = fetchBlob(client, server.peerId, smallHash, {
      sink: fileSink(out),
      chunkBytes: 256 * 1024,
      signal: stop.signal,
      onProgress: ({ received }) => { if (received >= 3 * MB) stop.abort(new Error('operator cancelled')) }
    })
    await expect(first).rejects.toThrow('operator cancelled')
    expect(existsSync(`${out}.part`)).toBe(true)
    const result = await fetchBlob(client, server.peerId, smallHash, { sink: fileSink(out), chunkBytes: 256 * 1024 })
    const servedSmall = served.filter(s => s.hash === smallHash).map(s => s.offset)
    expect(servedSmall[0]).toBe(0)
    expect(servedSmall[1]).toBeGreaterThanOrEqual(3 * MB)
    expect(result).toMatchObject({ hash: smallHash, size: 8 * MB + 123, attempts: 1 })
    expect(await fileHash(out)).toBe(smallHash)
  })

  it('names a blob the peer lacks, and refuses bytes that do not hash to what was asked', async () => {
    const missing = 'ab'.repeat(32)
    await expect(fetchBlob(client, server.peerId, missing)).rejects.toMatchObject({ name: 'BlobNotFoundError', message: `${server.peerId} does not hold blob ${missing}` })
    const [li, ci2] = await identities(join(dir.path, 'liar'), 2)
    const fake = 'cd'.repeat(32)
    // The member `client` does not list the liar, so it may not even dial it.
    await expect(fetchBlob(client, li!.peerId, fake)).rejects.toMatchObject({ name: 'PeerNotAllowedError', message: `peer ${li!.peerId} is not on the allowlist` })
    // A client that does list it gets bytes that do not hash to the name they were served under.
    const liar = host(li!, { psk, allowlist: [ci2!.peerId] })
    await serveBlobs(liar, { getBlobSize: async (h) => (h === fake ? 5000 : undefined), getBlobRange: async (_h, off, len) => new Uint8Array(len).fill(off % 251) })
    await liar.start()
    const trusting = host(ci2!, { psk, allowlist: [li!.peerId], bootstrap: [liar.multiaddrs()[0]!] })
    await trusting.start()
    try {
      await expect(fetchBlob(trusting, li!.peerId, fake, { chunkBytes: 1000 })).rejects.toMatchObject({
        name: 'BlobHashMismatchError',
        message: expect.stringMatching(new RegExp(`^blob from ${li!.peerId} hashes to [0-9a-f]{64}, not the ${fake} that was asked for; discarded$`))
      })
    } finally {
      await trusting.stop()
      await liar.stop()
    }
  })
})
