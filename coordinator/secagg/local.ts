/**
 * Runs one secure-aggregation round in process: every message goes straight
 * from a client to the server and back, and members can be made to drop out
 * before any stage. The simulator, the tests and bench/secagg.ts use it; a
 * real site runs the same client and server with the mesh in between.
 */
import type { Random } from '../components.ts'
import { InvalidArgumentError } from '../errors.ts'
import { createSecAggClient, type SecAggClient } from './client.ts'
import { createSecAggServer, type SecAggResult } from './server.ts'
import { messageBytes, type SecAggMessage } from './messages.ts'
import type { SecAggParams, Sign, Verify } from './common.ts'

export const SECAGG_STAGES = ['advertise', 'shareKeys', 'maskedInput', 'consistency', 'unmask'] as const
export type SecAggStage = typeof SECAGG_STAGES[number]

export interface LocalMember {
  siteId: string
  /** Float update (clipped and quantised by the client) or an already quantised one. */
  update: Float32Array | Uint32Array
  sign: Sign
  seed?: Uint8Array
}

export interface LocalRoundInit extends SecAggParams {
  clipNorm: number
  scale: number
  members: LocalMember[]
  /** Members that go silent before the given stage (and stay silent). */
  dropBefore?: Partial<Record<SecAggStage, string[]>>
}

export interface LocalRoundComponents {
  random: Random
  verify: Verify
}

export interface LocalRoundReport {
  result: SecAggResult
  /** Bytes each member sent and received (server's relays counted as received). */
  bytesUp: Record<string, number>
  bytesDown: Record<string, number>
  /** Milliseconds each member spent in maskedInput (quantise + mask), measured with `now` if given. */
  maskMs: Record<string, number>
}

export function runLocalSecAggRound (init: LocalRoundInit, components: LocalRoundComponents, now?: () => number): LocalRoundReport {
  if (init.members.length !== init.n) throw new InvalidArgumentError(`${init.members.length} members for a round of n = ${init.n}`)
  const params: SecAggParams = { roundId: init.roundId, n: init.n, threshold: init.threshold, vectorLength: init.vectorLength, ringBits: init.ringBits ?? 32 }
  const ringBits = params.ringBits!
  const server = createSecAggServer(params, { verify: components.verify })
  const clients = new Map<string, SecAggClient>()
  const updates = new Map<string, Float32Array | Uint32Array>()
  for (const m of init.members) {
    clients.set(m.siteId, createSecAggClient({ ...params, siteId: m.siteId, clipNorm: init.clipNorm, scale: init.scale, ...(m.seed !== undefined ? { seed: m.seed } : {}) },
      { random: components.random.fork(`secagg/${m.siteId}`), sign: m.sign, verify: components.verify }))
    updates.set(m.siteId, m.update)
  }
  const gone = new Set<string>()
  const bytesUp: Record<string, number> = {}
  const bytesDown: Record<string, number> = {}
  const maskMs: Record<string, number> = {}
  const up = (id: string, m: SecAggMessage): void => { bytesUp[id] = (bytesUp[id] ?? 0) + messageBytes(m, ringBits) }
  const down = (id: string, m: SecAggMessage): void => { bytesDown[id] = (bytesDown[id] ?? 0) + messageBytes(m, ringBits) }
  const present = (stage: SecAggStage): SecAggClient[] => {
    for (const id of init.dropBefore?.[stage] ?? []) gone.add(id)
    return [...clients.values()].filter(c => !gone.has(c.siteId))
  }

  for (const c of present('advertise')) {
    const m = c.advertise()
    up(c.siteId, m)
    server.receiveAdvertisement(m)
  }
  const roster = server.closeAdvertise()
  for (const c of present('shareKeys')) {
    down(c.siteId, roster)
    const m = c.shareKeys(roster)
    up(c.siteId, m)
    server.receiveShares(m)
  }
  const deliveries = new Map(server.closeShares().map(d => [d.to, d]))
  for (const c of present('maskedInput')) {
    const d = deliveries.get(c.siteId)
    if (d === undefined) continue // its shares never arrived: it is out of the round
    down(c.siteId, d)
    const u = updates.get(c.siteId)!
    const t0 = now?.() ?? 0
    const m = u instanceof Float32Array ? c.maskedInput(d, u) : c.maskedQuantisedInput(d, u)
    maskMs[c.siteId] = (now?.() ?? 0) - t0
    up(c.siteId, m)
    server.receiveMaskedInput(m)
  }
  const survivors = server.closeMaskedInput()
  for (const c of present('consistency')) {
    if (!survivors.survivors.includes(c.siteId)) continue
    down(c.siteId, survivors)
    const m = c.consistency(survivors)
    up(c.siteId, m)
    server.receiveConsistency(m)
  }
  const request = server.closeConsistency()
  for (const c of present('unmask')) {
    if (!request.signatures.some(s => s.siteId === c.siteId)) continue
    down(c.siteId, request)
    const m = c.unmask(request)
    up(c.siteId, m)
    server.receiveUnmask(m)
  }
  return { result: server.finish(), bytesUp, bytesDown, maskMs }
}
