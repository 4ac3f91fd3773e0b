import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createRoundLog, recordHash, type CommittedRound, type RoundLog } from '../node/round-log.ts'
import { openSiteStore, sha256Hex, type SiteStore } from '../node/store.ts'
import { aggregateToBytes, stateToBytes } from '../node/round-log.ts'

function makeRound (round: number, prevHash: string | null, values: number[], state: unknown = { t: round }): { record: CommittedRound, aggregateBytes: Uint8Array, strategyState: never } {
  const aggregateBytes = aggregateToBytes(Float32Array.from(values))
  const record: CommittedRound = {
    round,
    participants: ['a', 'b'],
    dropouts: ['c'],
    updates: [{ site: 'a', nonce: `${round}:a`, samples: 3 }, { site: 'b', nonce: `${round}:b`, samples: 4 }],
    aggregateHash: sha256Hex(aggregateBytes),
    stateHash: sha256Hex(stateToBytes(state as never)),
    specHash: 'spec',
    strategy: 'fedavg',
    seed: 42,
    prevHash
  }
  return { record, aggregateBytes, strategyState: state as never }
}

describe('durable round log (real LevelDB in a temp folder)', () => {
  let dir: string
  let store: SiteStore
  let log: RoundLog
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fm-rounds-'))
    store = await openSiteStore(join(dir, 'db'))
    log = createRoundLog(store)
  })
  afterEach(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('commits a chain of rounds and reads them back after a reopen', async () => {
    const r1 = makeRound(1, null, [1, 2])
    expect(await log.commit(r1.record, r1)).toBe('committed')
    const r2 = makeRound(2, recordHash(r1.record), [3, 4], { t: 2, m: 'AAAA' })
    await log.commit(r2.record, r2)
    await store.close()
    store = await openSiteStore(join(dir, 'db'))
    log = createRoundLog(store)
    expect(await log.last()).toEqual(r2.record)
    expect(await log.lastHash()).toBe(recordHash(r2.record))
    expect([...(await log.aggregate(1))!]).toEqual([1, 2])
    expect(await log.strategyState(2)).toEqual({ t: 2, m: 'AAAA' })
    expect((await log.records()).map(r => r.round)).toEqual([1, 2])
    expect(await log.get(3)).toBeUndefined()
  })

  it('is idempotent for the identical record and refuses a different one for the same round', async () => {
    const r1 = makeRound(1, null, [1, 2])
    await log.commit(r1.record, r1)
    expect(await log.commit(r1.record, r1)).toBe('exists')
    const other = makeRound(1, null, [9, 9])
    await expect(log.commit(other.record, other)).rejects.toMatchObject({ name: 'RoundConflictError', message: expect.stringContaining('round 1 is already committed') })
  })

  it('refuses gaps, broken links and bytes that do not match their hash, writing nothing', async () => {
    const r1 = makeRound(1, null, [1, 2])
    await log.commit(r1.record, r1)
    const gap = makeRound(3, recordHash(r1.record), [1, 1])
    await expect(log.commit(gap.record, gap)).rejects.toMatchObject({ name: 'RoundLogGapError', message: 'round 3 does not follow the log: the next round is 2' })
    const badLink = makeRound(2, 'f'.repeat(64), [1, 1])
    await expect(log.commit(badLink.record, badLink)).rejects.toMatchObject({ name: 'RoundLogGapError', message: expect.stringContaining('round 2 links to ffff') })
    const r2 = makeRound(2, recordHash(r1.record), [5, 6])
    const tampered = aggregateToBytes(Float32Array.from([5, 7]))
    await expect(log.verifyFetched(r2.record, tampered, r2.strategyState)).rejects.toMatchObject({ name: 'RoundHashMismatchError', message: expect.stringContaining('round 2: the aggregate hashes to') })
    await expect(log.verifyFetched(r2.record, r2.aggregateBytes, { t: 99 })).rejects.toMatchObject({ name: 'RoundHashMismatchError', message: expect.stringContaining('strategy state hashes to') })
    await expect(log.verifyFetched({ ...r2.record, round: 'two' }, r2.aggregateBytes)).rejects.toMatchObject({ name: 'RoundHashMismatchError', message: expect.stringContaining('fetched round record is malformed: round') })
    expect(await log.verifyFetched(r2.record, r2.aggregateBytes, r2.strategyState)).toEqual(r2.record)
    expect((await log.last())?.round).toBe(1)
  })

  it('catches up from a peer, verifying each round, and stops at a tampered one', async () => {
    const peerDir = join(dir, 'peer')
    const peerStore = await openSiteStore(peerDir)
    const peer = createRoundLog(peerStore)
    let prev: string | null = null
    for (let r = 1; r <= 4; r++) {
      const x = makeRound(r, prev, [r, -r])
      await peer.commit(x.record, x)
      prev = recordHash(x.record)
    }
    let served = 0
    const honest = { fetchRound: async (r: number) => { served++; return await peer.serve(r) } }
    expect(await log.catchUp(honest, { upTo: 2 })).toBe(2)
    const tamper = {
      fetchRound: async (r: number) => {
        const f = await peer.serve(r)
        if (f === undefined || r !== 4) return f
        return { ...f, aggregateBytes: aggregateToBytes(Float32Array.from([0, 0])) }
      }
    }
    await expect(log.catchUp(tamper)).rejects.toMatchObject({ name: 'RoundHashMismatchError', message: expect.stringContaining('round 4') })
    expect((await log.last())?.round).toBe(3)
    expect(await log.catchUp(honest)).toBe(1)
    expect(await log.records()).toEqual(await peer.records())
    expect(served).toBe(2 + 2)
    const ac = new AbortController()
    ac.abort()
    await expect(log.catchUp(honest, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' })
    await peerStore.close()
  })
})
