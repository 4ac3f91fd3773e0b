/**
 * Secure aggregation carried over the mesh (protocols/secagg): three sites,
 * the coordinator drives coordinator/secagg's five stages, and what reaches
 * it is masked. Checked on the wire: the bytes the coordinator reads never
 * hold a member's update (neither as float32 nor as its quantised ring
 * values), while in a plain federation they do; and the committed aggregate
 * is the global minus the mean of the members' updates, to the ring's
 * rounding.
 */
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { largestScale, quantise } from '../coordinator/secagg/quantise.ts'
import { generatePsk, type WireTap } from '../node/mesh/host.ts'
import { bytesToAggregate } from '../node/round-log.ts'
import { SECAGG_PROTOCOL } from '../protocols/secagg/constants.ts'
import { UPDATE_PROTOCOL } from '../protocols/update/constants.ts'
import { tempDir } from './mesh-helpers.ts'
import { DATA, records, regressionLearner, settings, siteIdentities, siteName, startFederation, type TestFederation } from './support/site-federation.ts'

const dir = tempDir('fm-site-secagg-')
afterAll(() => { dir.remove() })
const ROUNDS = 4
const CLIP = 100
const names = Array.from({ length: DATA.sites }, (_, i) => siteName(i))

/** Each member's update of `round`, computed the way its site computes it, from the committed global. */
function updates (global: Float32Array): Float32Array[] {
  return names.map((_, i) => {
    const learner = regressionLearner(i)
    learner.setShared(new Map([['w', { shape: [DATA.dim], data: global.slice() }]]))
    void learner.trainLocal(1)
    const now = learner.getShared().get('w')!.data
    return Float32Array.from(global, (g, j) => g - now[j]!)
  })
}

const contains = (hay: Buffer, needle: Float32Array | Uint32Array): boolean => hay.indexOf(Buffer.from(needle.buffer, needle.byteOffset, needle.byteLength)) >= 0

async function federation (name: string, secure: boolean): Promise<{ fed: TestFederation, inbound: Buffer }> {
  const path = join(dir.path, name)
  const identities = await siteIdentities(path, DATA.sites)
  const chunks: Buffer[] = []
  const tap: WireTap = (direction, _peer, protocol, bytes) => {
    if (direction === 'in' && (protocol === SECAGG_PROTOCOL || protocol === UPDATE_PROTOCOL)) chunks.push(Buffer.from(bytes))
  }
  const privacy = secure ? { clipNorm: CLIP, secureAggregation: { enabled: true } } : undefined
  const fed = await startFederation({
    dir: path,
    psk: generatePsk(),
    identities,
    wireTap: (i) => (i === 0 ? tap : undefined),
    settings: settings({ priorities: { [identities[0]!.peerId]: 1 }, ...(privacy !== undefined ? { privacy } : {}) })
  })
  await Promise.all(fed.sites.map(async s => await s.run({ untilRound: ROUNDS })))
  return { fed, inbound: Buffer.concat(chunks) }
}

describe('secure aggregation over the mesh', () => {
  it('the coordinator reads only masked inputs, and commits the mean of the members\' updates', async () => {
    const { fed, inbound } = await federation('secure', true)
    try {
      const logs = await Promise.all(fed.sites.map(records))
      for (const log of logs) expect(log).toEqual(logs[0])
      expect(logs[0]!.map(r => r.participants)).toEqual(Array.from({ length: ROUNDS }, () => names))
      const scale = largestScale(DATA.sites, CLIP, 32)
      let global: Float32Array = new Float32Array(DATA.dim)
      for (const r of logs[0]!) {
        const deltas = updates(global)
        for (const d of deltas) {
          // Neither the float32 update nor its ring values ever reached the coordinator.
          expect(contains(inbound, d.subarray(0, 3))).toBe(false)
          expect(contains(inbound, quantise(d, { clipNorm: CLIP, scale, ringBits: 32 }).subarray(0, 3))).toBe(false)
        }
        const next = bytesToAggregate((await fed.sites[0]!.roundLog().serve(r.round))!.aggregateBytes)
        for (let j = 0; j < DATA.dim; j++) {
          const mean = (deltas[0]![j]! + deltas[1]![j]! + deltas[2]![j]!) / 3
          // FedAvg over the secure sum: members weigh equally; three rounding steps of 1/scale at most.
          expect(Math.abs(next[j]! - (global[j]! - mean))).toBeLessThan(3 / scale + 1e-6)
        }
        global = next
      }
    } finally {
      await fed.stop()
    }
  })

  it('(control) without it, the coordinator reads each member\'s update as sent', async () => {
    const { fed, inbound } = await federation('plain', false)
    try {
      const first = updates(new Float32Array(DATA.dim))
      // site-2 and site-3 sent theirs over the wire; site-1 coordinates and delivers its own locally.
      expect(first.map(d => contains(inbound, d.subarray(0, 3)))).toEqual([false, true, true])
    } finally {
      await fed.stop()
    }
  })
})
