/**
 * Sites as real child processes, each with its own LevelDB and TCP port,
 * federating over the real mesh; one is killed with SIGKILL mid-round.
 *
 * - A member killed while it trains round 3 (the round is open, its update
 *   not yet sent) restarts from its last committed round, sends the update
 *   the round is waiting for, and every log ends identical to the fault-free
 *   run's: nothing lost, nothing counted twice.
 * - The coordinator killed while it trains round 3: the others notice its
 *   silence, elect the next site, which reopens round 3 without it and
 *   commits it; the old coordinator restarts, catches up on the rounds it
 *   missed (verifying each), and all three logs end identical.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { appendFileSync } from 'node:fs'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { generatePsk } from '../node/mesh/host.ts'
import { createRoundLog, type CommittedRound } from '../node/round-log.ts'
import { openSiteStore } from '../node/store.ts'
import { tempDir, waitFor } from './mesh-helpers.ts'
import { DATA, records, settings, siteIdentities, siteName, startFederation } from './support/site-federation.ts'
import type { RunnerConfig, RunnerMessage } from './support/site-runner.ts'

const RUNNER = fileURLToPath(new URL('./support/site-runner.ts', import.meta.url))
const ROUNDS = 5
// Two live members may go on without a dead one; all three start together.
const SETTINGS = settings({ minParticipants: 2 })
const dir = tempDir('fm-site-crash-')
const children = new Set<ChildProcess>()
afterAll(() => {
  for (const c of children) c.kill('SIGKILL')
  dir.remove()
})

async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  server.close()
  await once(server, 'close')
  return port
}

class Child {
  proc!: ChildProcess
  readonly messages: RunnerMessage[] = []
  stderr = ''
  constructor (readonly config: RunnerConfig) {}

  start (over: Partial<RunnerConfig> = {}): void {
    this.messages.length = 0
    this.proc = fork(RUNNER, [JSON.stringify({ ...this.config, ...over })], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
    children.add(this.proc)
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString()
      if (process.env['FM_SITE_DEBUG_DIR'] !== undefined) appendFileSync(join(process.env['FM_SITE_DEBUG_DIR'], `${siteName(this.config.index)}.log`), d)
    })
    this.proc.on('message', (m: RunnerMessage) => { this.messages.push(m) })
  }

  async next<T extends RunnerMessage['type']> (type: T, match: (m: Extract<RunnerMessage, { type: T }>) => boolean = () => true, timeoutMs = 45_000): Promise<Extract<RunnerMessage, { type: T }>> {
    const find = (): Extract<RunnerMessage, { type: T }> | undefined => {
      const failed = this.messages.find(m => m.type === 'error')
      if (failed !== undefined) throw new Error(`${siteName(this.config.index)} failed: ${JSON.stringify(failed)}\n${this.stderr}`)
      return this.messages.find((m): m is Extract<RunnerMessage, { type: T }> => m.type === type && match(m as Extract<RunnerMessage, { type: T }>))
    }
    await waitFor(`${siteName(this.config.index)} to report ${type}`, () => find() !== undefined, timeoutMs)
    return find()!
  }

  async kill (): Promise<void> {
    const exited = once(this.proc, 'exit')
    this.proc.kill('SIGKILL')
    await exited
    children.delete(this.proc)
  }

  async stop (): Promise<void> {
    if (this.proc.exitCode !== null) return
    const exited = once(this.proc, 'exit')
    this.proc.send({ type: 'stop' })
    await exited
    children.delete(this.proc)
  }
}

async function readLog (path: string): Promise<CommittedRound[]> {
  const store = await openSiteStore(path)
  try {
    return await createRoundLog(store).records()
  } finally {
    await store.close()
  }
}

/** Three child sites on fixed ports; `first` is the one the election names (smallest peer id). */
async function spawn (name: string): Promise<{ sites: Child[], byRank: Child[], path: string }> {
  const path = join(dir.path, name)
  const ids = await siteIdentities(path, DATA.sites)
  const ports = [await freePort(), await freePort(), await freePort()]
  const psk = Buffer.from(generatePsk()).toString('base64')
  const address = (i: number): string => `/ip4/127.0.0.1/tcp/${ports[i]!}/p2p/${ids[i]!.peerId}`
  const sites = ids.map((id, i) => new Child({
    index: i,
    dir: join(path, siteName(i)),
    keyFile: join(path, `${siteName(i)}.key`),
    port: ports[i]!,
    bootstrap: ids.map((_, j) => j).filter(j => j !== i).map(address),
    allowlist: ids.map(x => x.peerId),
    psk,
    settings: SETTINGS,
    untilRound: ROUNDS
  }))
  const byRank = [...sites].sort((a, b) => (ids[a.config.index]!.peerId < ids[b.config.index]!.peerId ? -1 : 1))
  return { sites, byRank, path }
}

function expectEachUpdateOnce (log: CommittedRound[]): void {
  for (const r of log) {
    expect(r.updates.map(u => u.site)).toEqual(r.participants)
    expect(r.updates.map(u => u.nonce)).toEqual(r.participants.map(s => `${r.round}:${s}`))
  }
}

describe('sites as child processes killed with SIGKILL mid-round', () => {
  it('a member killed in round 3 restarts from its log, the round completes with it, and every log equals the fault-free run', async () => {
    const refPath = join(dir.path, 'reference')
    // In process, all three in every round (the children wait for each other before round 1).
    const ref = await startFederation({ dir: refPath, psk: generatePsk(), identities: await siteIdentities(refPath, DATA.sites), settings: settings() })
    let reference: CommittedRound[]
    try {
      await Promise.all(ref.sites.map(async s => await s.run({ untilRound: ROUNDS })))
      reference = await records(ref.sites[0]!)
    } finally {
      await ref.stop()
    }

    const { sites, byRank, path } = await spawn('member')
    const victim = byRank[1]!
    for (const s of sites) s.start({ waitForPeers: 2, ...(s === victim ? { holdAtRound: 3 } : {}) })
    try {
      await victim.next('hold', m => m.round === 3)
      await victim.kill()
      victim.start()
      // It resumes from its last committed round, 2, and sends the update round 3 waits for.
      expect((await victim.next('ready')).round).toBe(2)
      for (const s of sites) await s.next('done')
    } finally {
      for (const s of sites) await s.stop()
    }
    for (const s of sites) {
      const log = await readLog(join(path, siteName(s.config.index)))
      expect(log).toEqual(reference)
      expectEachUpdateOnce(log)
    }
  })

  it('the coordinator killed in round 3 is replaced; round 3 completes without it; it restarts, catches up, and all logs agree', async () => {
    const { sites, byRank, path } = await spawn('coordinator')
    const [old, next] = byRank
    for (const s of sites) s.start({ waitForPeers: 2, ...(s === old ? { holdAtRound: 3 } : {}) })
    try {
      for (const s of sites) await s.next('coordinator', m => m.site === siteName(old!.config.index))
      await old!.next('hold', m => m.round === 3)
      await old!.kill()
      const survivors = sites.filter(s => s !== old)
      for (const s of survivors) await s.next('coordinator', m => m.site === siteName(next!.config.index))
      const round3 = await next!.next('commit', m => m.round === 3)
      expect(round3.participants).toEqual(survivors.map(s => siteName(s.config.index)))

      old!.start()
      expect((await old!.next('ready')).round).toBe(2)
      // It takes the rounds it missed from its peers, verified one by one.
      expect((await old!.next('commit', m => m.round === 3)).via).toBe('catch-up')
      for (const s of sites) await s.next('done')
    } finally {
      for (const s of sites) await s.stop()
    }
    const logs = await Promise.all(sites.map(async s => await readLog(join(path, siteName(s.config.index)))))
    for (const log of logs) expect(log).toEqual(logs[0])
    const log = logs[0]!
    expect(log.map(r => r.round)).toEqual([1, 2, 3, 4, 5])
    expect(log[0]!.participants).toEqual([siteName(0), siteName(1), siteName(2)])
    expect(log[2]!.participants).not.toContain(siteName(old!.config.index))
    expectEachUpdateOnce(log)
  })
})
