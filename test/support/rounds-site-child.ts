/**
 * One site as a real child process, for the SIGKILL tests: it owns its
 * LevelDB round log and answers the coordinator (the parent) over Node's IPC
 * channel. It keeps nothing in memory that matters: everything it knows after
 * a restart comes from its store, or from the parent while catching up.
 *
 *   node --import tsx test/support/rounds-site-child.ts <store-dir> <site-index>
 */
import '../../node/runtime.ts'
import { createRoundLog, type CommittedRound, type FetchedRound } from '../../node/round-log.ts'
import { openSiteStore } from '../../node/store.ts'
import { localDelta, makeRegressionData } from './rounds-federation.ts'

export const CHILD_DATA = { seed: 7, sites: 3, dim: 6, localSteps: 1, localLr: 0.2 }

type Message =
  | { id: number, op: 'update' }
  | { id: number, op: 'commit', record: CommittedRound, aggregate: string, state: unknown }
  | { id: number, op: 'catch-up' }
  | { id: number, op: 'records' }
  | { id: number, op: 'fetched', round: { record: unknown, aggregate: string, state: unknown } | null }

const [dir, indexArg] = process.argv.slice(2)
const index = Number(indexArg)
const site = `site-${index + 1}`
const data = makeRegressionData(CHILD_DATA.seed, CHILD_DATA.sites, CHILD_DATA.dim).data[index]!
const store = await openSiteStore(dir!)
const log = createRoundLog(store)
const fetches = new Map<number, (r: FetchedRound | undefined) => void>()
let nextFetch = 1_000_000

const reply = (id: number, body: unknown): void => { process.send!({ id, body }) }
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64')
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'))

async function handle (msg: Message): Promise<void> {
  switch (msg.op) {
    case 'update': {
      const last = await log.last()
      const global = last === undefined ? new Float32Array(CHILD_DATA.dim) : (await log.aggregate(last.round))!
      const round = (last?.round ?? 0) + 1
      const delta = localDelta(data, global, CHILD_DATA.localSteps, CHILD_DATA.localLr)
      reply(msg.id, { round, site, nonce: `${round}:${site}`, delta: b64(new Uint8Array(delta.buffer)), samples: data.n })
      return
    }
    case 'commit': {
      const bytes = unb64(msg.aggregate)
      const record = await log.verifyFetched(msg.record, bytes, msg.state).catch(async (err: unknown) => {
        // Already there (the announcement is being retried): commit below answers 'exists'.
        if ((await log.get(msg.record.round)) !== undefined) return msg.record
        throw err
      })
      reply(msg.id, await log.commit(record, { strategyState: msg.state as never, aggregateBytes: bytes }))
      return
    }
    case 'catch-up': {
      const count = await log.catchUp({
        fetchRound: async (round) => await new Promise(resolve => {
          const id = nextFetch++
          fetches.set(id, resolve)
          process.send!({ id, fetch: round })
        })
      })
      reply(msg.id, count)
      return
    }
    case 'records':
      reply(msg.id, await log.records())
      return
    case 'fetched': {
      const resolve = fetches.get(msg.id)
      fetches.delete(msg.id)
      resolve?.(msg.round === null ? undefined : { record: msg.round.record, aggregateBytes: unb64(msg.round.aggregate), strategyState: msg.round.state })
    }
  }
}

process.on('message', (msg: Message) => {
  handle(msg).catch((err: unknown) => { reply(msg.id, { error: String(err) }) })
})
process.on('disconnect', () => { void store.close().finally(() => process.exit(0)) })
process.send!({ ready: true })
