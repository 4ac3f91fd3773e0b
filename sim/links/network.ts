/**
 * The simulated network of one run: which address belongs to which site, the
 * link between any two sites, partitions, and byte counts per directed link.
 * Every site's shaped transport (transport.ts) consults the same network, so
 * it must live in the process that runs those sites.
 *
 * Addressing: a dialled multiaddr names its site by the /p2p/<peer id> that
 * libp2p appends to every dial, or failing that by the listen address the
 * site registered (/ip4/…/tcp/<port>, /memory/<name>).
 */
import type { MultiaddrConnection } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Clock, Logger, Random } from '../../coordinator/components.ts'
import { createSilentLogger } from '../../coordinator/components.ts'
import { LinkPartitionedError } from '../errors.ts'
import type { LinkSpec } from '../topology.ts'
import { ShapedMultiaddrConnection } from './connection.ts'
import { createLinkDirection, type LinkDirection } from './link.ts'

const CODE_P2P = 421

export interface SimNetworkInit {
  /** The link from one site to another (e.g. `(a, b) => resolveLink(topology, a, b)`). */
  link: (from: string, to: string) => LinkSpec
  /** Per-direction queue limit before writers wait; default 1 MiB. */
  highWaterBytes?: number
}

export interface SimNetworkComponents {
  /** Seeds jitter and loss; each connection gets its own fork. */
  random: Random
  /** A clock with sub-millisecond resolution; default performance.now. */
  clock?: Clock
  logger?: Logger
}

export interface LinkBytes { from: string, to: string, bytes: number }

export interface SimNetwork {
  register: (site: string, ids: { peerId?: string, addrs?: Array<Multiaddr | string> }) => void
  siteOf: (ma: Multiaddr) => string | undefined
  canReach: (from: string, to: string) => boolean
  /** Cuts the network into groups (null heals it); connections across groups are reset. */
  partition: (groups: string[][] | null) => void
  /** Wraps a dialled connection from `from` to `to` in that link's shaping. */
  shape: (inner: MultiaddrConnection, from: string, to: string) => MultiaddrConnection
  /** One-way delay from one site to another (for the connect handshake). */
  latencyMs: (from: string, to: string) => number
  /** Bytes carried per directed link, including Noise and yamux framing; sorted. */
  bytesPerLink: () => LinkBytes[]
  stats: () => { openConnections: number, connections: number, losses: number }
}

export function createSimNetwork (init: SimNetworkInit, components: SimNetworkComponents): SimNetwork {
  const clock = components.clock ?? { now: () => performance.now() }
  const logger = components.logger ?? createSilentLogger('forgemesh:sim:links')
  const byPeer = new Map<string, string>()
  const byAddr = new Map<string, string>()
  const counters = new Map<string, LinkBytes>()
  const dialsPerPair = new Map<string, number>()
  const open = new Set<{ from: string, to: string, conn: MultiaddrConnection }>()
  let groupOf: Map<string, number> | null = null
  let connections = 0
  let losses = 0

  const counted = (dir: LinkDirection, from: string, to: string): LinkDirection => {
    const key = `${from}\u0000${to}`
    let c = counters.get(key)
    if (c === undefined) counters.set(key, c = { from, to, bytes: 0 })
    const counter = c
    return {
      spec: dir.spec,
      get bytes () { return dir.bytes },
      lossAtByte: dir.lossAtByte,
      admit: (size, now) => {
        const r = dir.admit(size, now)
        if (r !== 'lost') counter.bytes += size
        return r
      }
    }
  }

  const canReach = (from: string, to: string): boolean => {
    if (groupOf === null) return true
    const a = groupOf.get(from)
    const b = groupOf.get(to)
    // A site named in no group is cut off from everyone.
    return a !== undefined && a === b
  }

  return {
    register (site, ids) {
      if (ids.peerId !== undefined) byPeer.set(ids.peerId, site)
      for (const a of ids.addrs ?? []) byAddr.set(multiaddr(a.toString()).decapsulateCode(CODE_P2P).toString(), site)
    },
    siteOf (ma) {
      const peer = ma.getComponents().find(c => c.code === CODE_P2P)?.value
      if (peer !== undefined && byPeer.has(peer)) return byPeer.get(peer)
      return byAddr.get(ma.decapsulateCode(CODE_P2P).toString())
    },
    canReach,
    partition (groups) {
      groupOf = groups === null ? null : new Map(groups.flatMap((g, i) => g.map(s => [s, i] as [string, number])))
      logger.info('partition', { groups })
      for (const entry of open) {
        if (!canReach(entry.from, entry.to)) entry.conn.abort(new LinkPartitionedError(`network partitioned between ${entry.from} and ${entry.to}`))
      }
    },
    shape (inner, from, to) {
      if (!canReach(from, to)) throw new LinkPartitionedError(`network partitioned between ${from} and ${to}`)
      const pair = `${from}->${to}`
      const n = dialsPerPair.get(pair) ?? 0
      dialsPerPair.set(pair, n + 1)
      const random = components.random.fork(`${pair}#${n}`)
      const conn = new ShapedMultiaddrConnection({
        inner,
        egress: counted(createLinkDirection(init.link(from, to), random.fork('egress')), from, to),
        ingress: counted(createLinkDirection(init.link(to, from), random.fork('ingress')), to, from),
        now: () => clock.now(),
        label: pair,
        highWaterBytes: init.highWaterBytes,
        onLoss: (direction, atByte) => {
          losses++
          logger.info('link loss', { from, to, direction, atByte })
        }
      })
      const entry = { from, to, conn }
      open.add(entry)
      connections++
      conn.addEventListener('close', () => { open.delete(entry) })
      return conn
    },
    latencyMs: (from, to) => init.link(from, to).latencyMs,
    bytesPerLink: () => [...counters.values()].map(c => ({ ...c })).sort((x, y) => x.from === y.from ? (x.to < y.to ? -1 : 1) : (x.from < y.from ? -1 : 1)),
    stats: () => ({ openConnections: open.size, connections, losses })
  }
}
