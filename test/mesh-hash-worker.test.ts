/**
 * The sender's sha256 on a worker thread: the digest is exactly node:crypto's
 * over the same bytes however they are cut, one body at a time (a second
 * caller is told to hash inline), a dropped or aborted body never leaks into
 * the next digest, and the idle thread never holds its process open.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { createHashWorker, type HashJob } from '../node/mesh/hash-worker.ts'
import { generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { createUpdateService } from '../node/mesh/update.ts'
import { flattenTensors } from '../protocols/tensors.ts'
import { host, identities, recordingLogger, tempDir, waitFor } from './mesh-helpers.ts'

function bytes (seed: number, n: number): Uint8Array {
  const rng = createSeededRandom(seed)
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(rng.next() * 256)
  return out
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('hash worker', () => {
  // Small slots, so a body wraps the ring many times.
  const worker = createHashWorker({ slotBytes: 4096, slots: 4 })
  afterAll(async () => { await worker.stop() })
  const freeJob = async (): Promise<HashJob> => {
    let job: HashJob | undefined
    await waitFor('the hash worker to be free', () => (job = worker.begin()) !== undefined)
    return job!
  }

  it('digests exactly what node:crypto does, whatever the cuts (empty, sub-slot, multi-slot pieces)', async () => {
    const body = bytes(1, 100_003)
    const rng = createSeededRandom(2)
    for (let round = 0; round < 5; round++) {
      const job = worker.begin()!
      for (let off = 0; off < body.byteLength;) {
        const n = Math.min(body.byteLength - off, Math.floor(rng.next() * 20_000))
        job.update(body.subarray(off, off + n))
        off += n
      }
      expect((await job.digest()).toString('hex')).toBe(sha(body))
    }
    const empty = worker.begin()!
    expect((await empty.digest()).toString('hex')).toBe(sha(new Uint8Array(0)))
  })

  it('a full ring makes the caller wait on a promise, never blocks the event loop, and keeps the order', async () => {
    const body = bytes(8, 2_000_000) // 489 slots of this ring's 4 KiB: far more than its 4
    const job = worker.begin()!
    let ticks = 0
    const ticker = setInterval(() => { ticks++ }, 0)
    try {
      const first = job.update(body.subarray(0, 1_500_000))
      expect(first).toBeInstanceOf(Promise)
      // Queued behind the first without awaiting it: still hashed in order.
      const second = job.update(body.subarray(1_500_000))
      await Promise.all([first, second])
      expect((await job.digest()).toString('hex')).toBe(sha(body))
    } finally {
      clearInterval(ticker)
    }
    // The timer ran while the bytes waited for room (a blocking wait would have held it off until the end).
    expect(ticks).toBeGreaterThan(0)
  })

  it('takes one body at a time: a second caller gets undefined until the first digest', async () => {
    const first = worker.begin()!
    expect(worker.begin()).toBeUndefined()
    first.update(bytes(3, 10_000))
    await first.digest()
    const next = worker.begin()
    expect(next).toBeDefined()
    next!.abort()
  })

  it('a dropped body and an aborted digest never reach the next digest', async () => {
    const dropped = worker.begin()!
    dropped.update(bytes(4, 50_000))
    dropped.abort()
    dropped.abort()
    expect(() => { dropped.update(new Uint8Array(1)) }).toThrow(expect.objectContaining({ name: 'HashWorkerError', message: 'this hash job is over' }))

    // Its bytes still waited for room, so the worker is free once its DROP is in the ring.
    const aborted = await freeJob()
    aborted.update(bytes(5, 50_000))
    const ctl = new AbortController()
    const reason = new Error('the send was cancelled')
    ctl.abort(reason)
    await expect(aborted.digest({ signal: ctl.signal })).rejects.toBe(reason)

    const body = bytes(6, 30_000)
    const job = await freeJob()
    job.update(body)
    expect((await job.digest()).toString('hex')).toBe(sha(body))
  })

  it('starts a fresh thread after stop()', async () => {
    await worker.stop()
    await worker.stop()
    const body = bytes(7, 9_000)
    const job = worker.begin()!
    job.update(body)
    expect((await job.digest()).toString('hex')).toBe(sha(body))
  })

  it('refuses a ring without slots', () => {
    expect(() => createHashWorker({ slots: 0 })).toThrow(expect.objectContaining({ name: 'HashWorkerError', message: 'slotBytes and slots must be positive integers, got 1048576 and 0' }))
  })
})

describe('hash worker and process exit', () => {
  const dir = tempDir('fm-hashw-')
  afterAll(() => { dir.remove() })

  it('a process whose worker is idle exits on its own once its work is done', async () => {
    const module = fileURLToPath(new URL('../node/mesh/hash-worker.ts', import.meta.url))
    const script = join(dir.path, 'uses-worker.mts')
    writeFileSync(script, [
      `import { createHashWorker } from ${JSON.stringify(module)}`,
      'const job = createHashWorker().begin()',
      'job.update(new Uint8Array(3_000_000).fill(7))',
      "process.stdout.write((await job.digest()).toString('hex'))"
    ].join('\n'))
    const root = fileURLToPath(new URL('..', import.meta.url))
    const out = await new Promise<{ code: number | null, stdout: string }>((resolve) => {
      // The deadline is a hang detector, not a timing threshold: it exits in about a second.
      const child = execFile(process.execPath, ['--import', 'tsx', script], { cwd: root, timeout: 30_000 }, (err, stdout) => {
        resolve({ code: err === null ? 0 : (child.exitCode ?? -1), stdout })
      })
    })
    expect(out).toEqual({ code: 0, stdout: sha(new Uint8Array(3_000_000).fill(7)) })
  })
})

describe('update sends hashed on the worker, on loopback', () => {
  const dir = tempDir('fm-hashw-mesh-')
  const psk = generatePsk()
  let a: SiteHost, b: SiteHost
  const received: Array<{ round: number, flat: Float32Array }> = []
  const senderLog = recordingLogger()

  afterAll(async () => {
    await b.stop()
    await a.stop()
    dir.remove()
  })

  it('two large updates at once: one is hashed on the worker, the other inline, and both arrive exactly', async () => {
    const ids = await identities(dir.path, 2)
    const allowlist = ids.map(i => i.peerId)
    a = host(ids[0]!, { psk, allowlist })
    const receiver = createUpdateService({}, { host: a, logger: createSilentLogger('t') })
    receiver.onUpdate((u) => {
      received.push({ round: u.header.round, flat: flattenTensors(u.tensors) })
      u.release()
      return { accepted: true }
    })
    await receiver.start()
    await a.start()
    b = host(ids[1]!, { psk, allowlist, bootstrap: [a.multiaddrs()[0]!] })
    const sender = createUpdateService({}, { host: b, logger: senderLog })
    await b.start()
    await waitFor('b connected to a', () => b.connectedPeers().includes(a.peerId))

    const maps = [1, 2].map(seed => {
      const rng = createSeededRandom(seed)
      return new Map([['w', { shape: [1_500_000], data: Float32Array.from({ length: 1_500_000 }, () => rng.normal()) }]])
    })
    const acks = await Promise.all(maps.map(async (tensors, i) => await sender.send(a.peerId, { round: i + 1, site: 'site-b', dtype: 'f32', tensors })))
    expect(acks).toEqual([{ kind: 'ack', round: 1, accepted: true }, { kind: 'ack', round: 2, accepted: true }])
    const hashedOn = senderLog.records.filter(r => r.event === 'update.hashed').map(r => r.fields?.['on']).sort()
    expect(hashedOn).toEqual(['event-loop', 'worker'])
    for (const [i, map] of maps.entries()) {
      const got = received.find(r => r.round === i + 1)!
      expect(Buffer.from(got.flat.buffer).equals(Buffer.from(map.get('w')!.data.buffer))).toBe(true)
    }
  })
})
