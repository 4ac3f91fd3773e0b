/**
 * The simulator's sites: every one a real node — its own Ed25519 identity, a
 * real libp2p host behind the shaped-link transport, a real LevelDB store in
 * the run's temporary folder — all in this process, sharing the federation
 * key. The fleet starts, crashes, restarts, admits and retires sites as the
 * fault schedule says, and counts the payload bytes of every link.
 */
import { join } from 'node:path'
import { tcp } from '@libp2p/tcp'
import { memory } from '@libp2p/memory'
import type { Logger, Random } from '../coordinator/components.ts'
import type { Clock } from '../coordinator/components.ts'
import { createHash } from 'node:crypto'
import { identityFromSeed, type SiteIdentity } from '../node/identity.ts'
import type { WireTap } from '../node/mesh/host.ts'
import { generatePsk } from '../node/mesh/psk.ts'
import type { FederationSettingsInput } from '../node/site/config.ts'
import type { Learner } from '../node/site/learner.ts'
import { createSite, type CommitEvent, type Site } from '../node/site/site.ts'
import { openSiteStore, type SiteStore } from '../node/store.ts'
import { createSimNetwork, type SimNetwork } from './links/network.ts'
import { shapedTransport } from './links/transport.ts'
import { resolveLink, type Topology } from './topology.ts'

export type SiteState = 'absent' | 'up' | 'down' | 'left'

export interface SimSite {
  readonly name: string
  readonly index: number
  readonly identity: SiteIdentity
  readonly storeDir: string
  readonly learner: Learner
  state: SiteState
  site: Site | undefined
  store: SiteStore | undefined
}

/** What a method hangs on a running site (e.g. its expert exchange); undone when the site halts. */
export type Attach = (s: SimSite, running: { site: Site, store: SiteStore }) => Promise<() => Promise<void>>

export interface FleetInit {
  topology: Topology
  /** The run's temporary folder: identities and stores live under it. */
  dir: string
  settings: FederationSettingsInput
  specHash: string
  /** The federation's pnet key (default: a fresh one). */
  psk?: Uint8Array
}

export interface FleetComponents {
  clock: Clock
  random: Random
  logger: Logger
  learnerFor: (index: number) => Learner
  /** Called for every commit any site makes. */
  onCommit?: (site: string, event: CommitEvent) => void
  /** Every frame byte a site writes to a stream, with its protocol (before encryption). */
  onFrame?: (from: string, toPeer: string, protocol: string, bytes: number) => void
  /** Every frame byte a site writes to or reads from a stream, before encryption (leak tests search it). */
  wireTap?: (site: string, direction: 'out' | 'in', peerId: string, protocol: string, bytes: Uint8Array) => void
  attach?: Attach
}

export interface Fleet {
  readonly sites: readonly SimSite[]
  readonly network: SimNetwork
  byName: (name: string) => SimSite
  siteOfPeer: (peerId: string) => string | undefined
  /** Starts the sites that are present from the beginning (not joining later). */
  start: (present: (name: string) => boolean) => Promise<void>
  up: () => SimSite[]
  crash: (name: string) => Promise<void>
  restart: (name: string) => Promise<void>
  join: (name: string) => Promise<void>
  leave: (name: string) => Promise<void>
  stop: () => Promise<void>
}

export interface SimSiteInit {
  topology: Topology
  index: number
  identity: SiteIdentity
  store: SiteStore
  /** Listen addresses of sites already up. */
  bootstrap: string[]
  psk: Uint8Array
  allowlist: string[]
  /** The shaped network this site dials through. */
  network: SimNetwork
  settings: FederationSettingsInput
  specHash: string
}

/**
 * Beyond this many sites one machine's cores are crowded: heartbeats slow down
 * with N (sim/moe-method.ts) and libp2p's connection monitor is off, because a
 * ping that misses its timeout on a saturated event loop aborts a healthy
 * connection (64 inline sites reconnected without end); presence heartbeats
 * still judge liveness.
 */
export const CROWDED_FLEET_SITES = 10

/** One simulated site's node (not started): the same in this process and in a site's child process. */
export function createSimSite (init: SimSiteInit, components: { clock: Clock, random: Random, logger: Logger, learner: Learner, wireTap?: WireTap }): Site {
  const { topology, identity } = init
  const name = topology.sites[init.index]!.name
  const inner = topology.transport === 'memory' ? memory() : tcp()
  const listen = topology.transport === 'memory' ? [`/memory/${identity.peerId}-${init.index}`] : ['/ip4/127.0.0.1/tcp/0']
  return createSite({
    site: name,
    identity,
    store: init.store,
    host: {
      listen,
      bootstrap: init.bootstrap,
      psk: init.psk,
      allowlist: init.allowlist,
      transports: [shapedTransport({ site: name, network: init.network, inner })],
      reconnect: { initialMs: 100, maxMs: 2_000 },
      connectionMonitor: topology.sites.length <= CROWDED_FLEET_SITES
    },
    federation: init.settings,
    specHash: init.specHash
  }, { ...components, ...(components.wireTap !== undefined ? { wireTap: components.wireTap } : {}) })
}

/** The seeded identity of a site: a replayed run (in either execution mode) elects the same coordinators and so moves the same bytes. */
export async function simIdentity (seed: number, name: string): Promise<SiteIdentity> {
  return await identityFromSeed(createHash('sha256').update(`forgemesh sim identity/${seed}/${name}`).digest())
}

/** The run's shaped network: links from the topology, every site registered by peer id. */
export function simNetwork (topology: Topology, identities: ReadonlyArray<{ name: string, peerId: string }>, components: { random: Random, logger: Logger }): SimNetwork {
  const network = createSimNetwork({ link: (a, b) => resolveLink(topology, a, b) }, { random: components.random.fork('links'), logger: components.logger.child('links') })
  for (const s of identities) network.register(s.name, { peerId: s.peerId })
  return network
}

export async function createFleet (init: FleetInit, components: FleetComponents): Promise<Fleet> {
  const { topology } = init
  const log = components.logger
  const psk = init.psk ?? generatePsk()
  const sites: SimSite[] = []
  for (const [index, s] of topology.sites.entries()) {
    const identity = await simIdentity(topology.seed, s.name)
    sites.push({ name: s.name, index, identity, storeDir: join(init.dir, 'stores', s.name), learner: components.learnerFor(index), state: 'absent', site: undefined, store: undefined })
  }
  const network = simNetwork(topology, sites.map(s => ({ name: s.name, peerId: s.identity.peerId })), components)
  const allowlist = sites.map(s => s.identity.peerId)
  const byPeer = new Map(sites.map(s => [s.identity.peerId, s.name]))
  const byName = (name: string): SimSite => {
    const s = sites.find(x => x.name === name)
    if (s === undefined) throw new RangeError(`no site named '${name}'`)
    return s
  }

  const detachers = new Map<string, () => Promise<void>>()

  const boot = async (s: SimSite): Promise<void> => {
    const store = await openSiteStore(s.storeDir)
    const site = createSimSite({
      topology,
      index: s.index,
      identity: s.identity,
      store,
      bootstrap: sites.filter(o => o !== s && o.state === 'up' && o.site !== undefined).flatMap(o => o.site!.multiaddrs().slice(0, 1)),
      psk,
      allowlist,
      network,
      settings: init.settings,
      specHash: init.specHash
    }, {
      clock: components.clock,
      random: components.random.fork(`site/${s.name}`),
      logger: log.child(s.name),
      learner: s.learner,
      wireTap: (direction, peerId, protocol, bytes) => {
        if (direction === 'out') components.onFrame?.(s.name, peerId, protocol, bytes.byteLength)
        components.wireTap?.(s.name, direction, peerId, protocol, bytes)
      }
    })
    site.on('commit', (e) => { components.onCommit?.(s.name, e) })
    await site.start()
    s.site = site
    s.store = store
    s.state = 'up'
    if (components.attach !== undefined) detachers.set(s.name, await components.attach(s, { site, store }))
  }

  const halt = async (s: SimSite, next: SiteState): Promise<void> => {
    const site = s.site
    const store = s.store
    s.site = undefined
    s.store = undefined
    s.state = next
    const detach = detachers.get(s.name)
    detachers.delete(s.name)
    await detach?.()
    await site?.stop()
    await store?.close()
  }

  return {
    sites,
    network,
    byName,
    siteOfPeer: (peerId) => byPeer.get(peerId),
    start: async (present) => {
      for (const s of sites) if (present(s.name)) await boot(s)
    },
    up: () => sites.filter(s => s.state === 'up'),
    crash: async (name) => {
      const s = byName(name)
      if (s.state === 'up') await halt(s, 'down')
    },
    restart: async (name) => {
      const s = byName(name)
      if (s.state === 'down') await boot(s)
    },
    join: async (name) => {
      const s = byName(name)
      if (s.state === 'absent') await boot(s)
    },
    leave: async (name) => {
      const s = byName(name)
      if (s.state === 'up') await halt(s, 'left')
      else s.state = 'left'
    },
    stop: async () => {
      for (const s of sites) if (s.state === 'up') await halt(s, 'down')
    }
  }
}
