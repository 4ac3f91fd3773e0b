/**
 * The site host: a libp2p 3 node (tcp, Noise, yamux, identify, ping) behind
 * the federation's pnet key and the member allowlist, carrying forgemesh
 * frames. Protocol services register handlers with `handle` and talk to
 * peers with `request` (one frame each way) or `openStream` (many).
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import type { z } from 'zod'
import type { Clock, Logger } from '../../coordinator/components.ts'
import { ForgemeshError, WireFormatError } from '../../protocols/errors.ts'
import { AnyHeader, type Frame, type OutgoingFrame } from '../../protocols/frame/frame.ts'
import { ConfigError, InsecureMeshError, MeshNotStartedError, MeshRequestTimeoutError, MeshStreamError, PeerNotAllowedError } from '../errors.ts'
import type { SiteIdentity } from '../identity.ts'
import { FrameStream, type WireTap } from './frame-stream.ts'
import { allowlistGater } from './gater.ts'
import { boundedPreSharedKey } from './psk.ts'
import { createReconnector, type ReconnectInit, type Reconnector } from './reconnect.ts'

export { generatePsk, loadPsk } from './psk.ts'
export type { WireTap } from './frame-stream.ts'

export interface SiteHostInit {
  identity: SiteIdentity
  listen: string[]
  /** Members to dial and keep dialled: multiaddrs ending in /p2p/<peer id>. */
  bootstrap: string[]
  /** Contents of the federation key file (see loadPsk). */
  psk?: Uint8Array
  /** Run with no PSK. For local experiments only; logged loudly. */
  insecureOpenMesh?: boolean
  /** Member peer ids; the host's own id is implicitly allowed. */
  allowlist: string[]
  /** Overrides the default [tcp()] (the simulator passes a link-shaping wrapper). */
  transports?: NonNullable<Libp2pOptions['transports']>
  reconnect?: ReconnectInit
  /** libp2p's own metrics, e.g. prometheusMetrics({ registry }) from @libp2p/prometheus-metrics. */
  metrics?: Libp2pOptions['metrics']
  /**
   * libp2p's connection monitor (default on): it pings every connection and
   * aborts one whose ping misses its timeout. Presence heartbeats judge a
   * member's liveness either way; a simulator that runs many sites on one
   * saturated event loop turns it off, because there a late ping is the
   * loop's fault, not the link's, and every abort costs a full re-handshake.
   */
  connectionMonitor?: boolean
}

export interface SiteHostComponents {
  logger: Logger
  clock: Clock
  /** Sees every frame byte written to or read from a stream, before encryption. */
  wireTap?: WireTap
}

export interface SiteHostEvents {
  'peer:connect': { peerId: string, at: number }
  'peer:disconnect': { peerId: string, at: number }
  'peer:refused': { peerId: string, reason: string, direction: 'inbound' | 'outbound', at: number }
  /** The peer broke the wire format; its connection is being closed. */
  'peer:misbehaved': { peerId: string, protocol: string, error: Error, at: number }
}

export interface FrameContext {
  peerId: string
  protocol: string
  signal: AbortSignal
}

export type FrameHandler<H> = (frame: Frame<H>, ctx: FrameContext) => Promise<OutgoingFrame | undefined> | OutgoingFrame | undefined
export type StreamFrameHandler = (stream: FrameStream, ctx: FrameContext) => Promise<void>

export interface HandleOptions<S extends z.ZodType> {
  maxFrameBytes: number
  /** Request header schema; default: any object with a string `kind`. */
  schema?: S
  /** Whole exchange deadline. Default 60 s. */
  timeoutMs?: number
  maxInboundStreams?: number
  /** Hash each request body from this offset on as it arrives (Frame.bodyDigest). */
  bodyDigestFrom?: number
}

export interface RequestOptions<S extends z.ZodType> {
  signal?: AbortSignal
  timeoutMs?: number
  /** Largest response accepted. Default 64 KiB. */
  maxFrameBytes?: number
  /** Response header schema; default: any object with a string `kind`. */
  schema?: S
}

export interface PeerTraffic { bytesIn: number, bytesOut: number }

export interface SiteHost {
  readonly peerId: string
  start: () => Promise<void>
  stop: () => Promise<void>
  isStarted: () => boolean
  multiaddrs: () => string[]
  connectedPeers: () => string[]
  handle: <S extends z.ZodType = typeof AnyHeader>(protocol: string, handler: FrameHandler<z.infer<S>>, options: HandleOptions<S>) => Promise<void>
  handleStream: (protocol: string, handler: StreamFrameHandler, options: Omit<HandleOptions<z.ZodType>, 'schema'>) => Promise<void>
  /** One frame each way; a body given as parts is sent without being joined. */
  request: <S extends z.ZodType = typeof AnyHeader>(peerId: string, protocol: string, frame: OutgoingFrame, options?: RequestOptions<S>) => Promise<Frame<z.infer<S>>>
  openStream: (peerId: string, protocol: string, options: { maxFrameBytes: number, signal?: AbortSignal }) => Promise<FrameStream>
  /** Closes every connection to the peer (it may come back; see `refuse`). */
  closePeer: (peerId: string, reason: string) => Promise<void>
  /** Closes the peer and keeps it out until restart (an incompatible hello). */
  refuse: (peerId: string, reason: string) => Promise<void>
  traffic: () => Map<string, PeerTraffic>
  on: <K extends keyof SiteHostEvents>(event: K, listener: (e: SiteHostEvents[K]) => void) => () => void
  /** The libp2p node, for services that need it (metrics); undefined before start. */
  libp2p: () => Libp2p | undefined
}

const DEFAULT_HANDLER_TIMEOUT_MS = 60_000
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
const DEFAULT_RESPONSE_BYTES = 64 * 1024
const DEFAULT_RECONNECT: ReconnectInit = { initialMs: 500, maxMs: 30_000 }
const STREAMS_PER_PROTOCOL = 64

export function createSiteHost (init: SiteHostInit, components: SiteHostComponents): SiteHost {
  const { identity } = init
  const log = components.logger
  const selfId = identity.peerId
  const listeners = new Map<keyof SiteHostEvents, Set<(e: never) => void>>()
  const traffic = new Map<string, PeerTraffic>()
  const blocked = new Map<string, string>()
  const handlers = new Map<string, { run: (stream: Stream, connection: Connection) => Promise<void>, maxInboundStreams: number }>()
  let node: Libp2p | undefined
  let starting: Promise<void> | undefined
  let reconnector: Reconnector | undefined

  const emit = <K extends keyof SiteHostEvents>(event: K, e: SiteHostEvents[K]): void => {
    for (const l of listeners.get(event) ?? []) {
      try { (l as (e: SiteHostEvents[K]) => void)(e) } catch (err) { log.error('listener.failed', { event, error: err }) }
    }
  }

  const counter = (peerId: string) => (direction: 'in' | 'out', n: number): void => {
    let t = traffic.get(peerId)
    if (t === undefined) traffic.set(peerId, t = { bytesIn: 0, bytesOut: 0 })
    if (direction === 'in') t.bytesIn += n
    else t.bytesOut += n
  }

  const frameStream = (stream: Stream, peerId: string, protocol: string, maxFrameBytes: number, bodyDigestFrom?: number): FrameStream =>
    new FrameStream({ stream, peerId, protocol, maxFrameBytes, tap: components.wireTap, count: counter(peerId), ...(bodyDigestFrom !== undefined ? { bodyDigestFrom } : {}) })

  const started = (): Libp2p => {
    if (node === undefined) throw new MeshNotStartedError('the site host is not started')
    return node
  }

  const closePeer = async (peerId: string, reason: string): Promise<void> => {
    log.info('peer.close', { peer: peerId, reason })
    await started().hangUp(peerIdFromString(peerId)).catch((err: Error) => { log.debug('peer.close.failed', { peer: peerId, error: err.message }) })
  }

  /** Answers a failed exchange: an error frame, and for wire-format breaches, the connection closed. */
  const fail = async (fs: FrameStream, err: unknown): Promise<void> => {
    const { peerId, protocol } = fs
    const known = err instanceof ForgemeshError
    const header = { kind: 'error', code: known ? err.code : 'ERR_INTERNAL', message: known ? err.message.slice(0, 1024) : 'internal error' }
    if (!known) log.error('handler.failed', { peer: peerId, protocol, error: err })
    try {
      await fs.write(header, undefined, { signal: AbortSignal.timeout(2_000) })
      await fs.closeWrite({ signal: AbortSignal.timeout(2_000) })
      // Let the error frame reach the peer before its connection goes.
      if (err instanceof WireFormatError) await fs.closed(1_000)
    } catch {
      fs.abort(new MeshStreamError('could not send the error frame'))
    }
    if (err instanceof WireFormatError) {
      log.warn('peer.misbehaved', { peer: peerId, protocol, error: err.name, message: err.message })
      emit('peer:misbehaved', { peerId, protocol, error: err, at: components.clock.now() })
      await closePeer(peerId, `${err.name}: ${err.message}`)
    } else if (known) {
      log.info('handler.refused', { peer: peerId, protocol, error: err.name, message: err.message })
    }
  }

  const install = async (protocol: string): Promise<void> => {
    const h = handlers.get(protocol)
    if (node === undefined || h === undefined) return
    await node.handle(protocol, h.run, { maxInboundStreams: h.maxInboundStreams, maxOutboundStreams: STREAMS_PER_PROTOCOL, force: true })
  }

  const handleStream: SiteHost['handleStream'] = async (protocol, handler, options) => {
    const timeoutMs = options.timeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS
    const run = async (stream: Stream, connection: Connection): Promise<void> => {
      const peerId = connection.remotePeer.toString()
      if (!init.allowlist.includes(peerId) || blocked.has(peerId)) {
        // The gater should never let this happen; refuse rather than trust it.
        stream.abort(new PeerNotAllowedError(`peer ${peerId} is not a member`))
        return
      }
      const fs = frameStream(stream, peerId, protocol, options.maxFrameBytes, options.bodyDigestFrom)
      const signal = AbortSignal.timeout(timeoutMs)
      try {
        await handler(fs, { peerId, protocol, signal })
      } catch (err) {
        await fail(fs, signal.aborted ? new MeshRequestTimeoutError(`${protocol} exchange with ${peerId} took longer than ${timeoutMs} ms`) : err)
      }
    }
    handlers.set(protocol, { run, maxInboundStreams: options.maxInboundStreams ?? STREAMS_PER_PROTOCOL })
    await install(protocol)
  }

  const handle: SiteHost['handle'] = async (protocol, handler, options) => {
    const schema = options.schema ?? AnyHeader
    await handleStream(protocol, async (fs, ctx) => {
      const request = await fs.read(schema, { signal: ctx.signal })
      if (request === undefined) return
      const response = await handler(request as never, ctx)
      if (response !== undefined) await fs.write(response.header, response.body, { signal: ctx.signal })
      await fs.closeWrite({ signal: ctx.signal })
    }, options)
  }

  const openStream: SiteHost['openStream'] = async (peerId, protocol, options) => {
    if (!init.allowlist.includes(peerId) && peerId !== selfId) throw new PeerNotAllowedError(`peer ${peerId} is not on the allowlist`)
    let stream: Stream
    try {
      stream = await started().dialProtocol(peerIdFromString(peerId), protocol, { signal: options.signal })
    } catch (err) {
      if (options.signal?.aborted === true) throw options.signal.reason
      throw new MeshStreamError(`cannot open ${protocol} to ${peerId}: ${(err as Error).message}`, { cause: err })
    }
    return frameStream(stream, peerId, protocol, options.maxFrameBytes)
  }

  const request: SiteHost['request'] = async (peerId, protocol, frame, options = {}) => {
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    const timeout = AbortSignal.timeout(timeoutMs)
    const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
    let fs: FrameStream | undefined
    try {
      fs = await openStream(peerId, protocol, { maxFrameBytes: options.maxFrameBytes ?? DEFAULT_RESPONSE_BYTES, signal })
      await fs.write(frame.header, frame.body, { signal })
      await fs.closeWrite({ signal })
      const response = await fs.read(options.schema ?? AnyHeader, { signal })
      if (response === undefined) throw new MeshStreamError(`${peerId} closed ${protocol} without answering`)
      return response as never
    } catch (err) {
      fs?.abort(err instanceof Error ? err : new Error(String(err)))
      if (timeout.aborted && options.signal?.aborted !== true) throw new MeshRequestTimeoutError(`${protocol} request to ${peerId} got no answer within ${timeoutMs} ms`)
      throw err
    }
  }

  const start = async (): Promise<void> => {
    if (starting !== undefined) return await starting
    starting = (async () => {
      let protector: Libp2pOptions['connectionProtector']
      if (init.psk !== undefined) protector = boundedPreSharedKey(init.psk)
      else if (init.insecureOpenMesh === true) log.warn('mesh.insecure', { message: 'INSECURE OPEN MESH: no federation key (pnet PSK). Anyone who can reach this node can attempt a handshake; only the allowlist stands in the way. Local experiments only.' })
      else throw new InsecureMeshError('no federation key (pnet PSK) configured: set the key file, or insecureOpenMesh: true for a local experiment')
      const reconnect = init.reconnect ?? DEFAULT_RECONNECT
      if (!(reconnect.initialMs > 0 && reconnect.maxMs >= reconnect.initialMs)) throw new ConfigError(`reconnect needs 0 < initialMs <= maxMs, got ${reconnect.initialMs}/${reconnect.maxMs}`)
      const targets = init.bootstrap.map(address => {
        const id = multiaddr(address).getComponents().find(c => c.name === 'p2p')?.value
        if (id === undefined) throw new ConfigError(`bootstrap address ${address} does not end in /p2p/<peer id>`)
        return { peerId: id, address }
      })
      const lib = await createLibp2p({
        privateKey: identity.privateKey,
        addresses: { listen: init.listen },
        transports: init.transports ?? [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        ...(protector !== undefined ? { connectionProtector: protector } : {}),
        ...(init.metrics !== undefined ? { metrics: init.metrics } : {}),
        ...(init.connectionMonitor === false ? { connectionMonitor: { enabled: false } } : {}),
        connectionGater: allowlistGater({
          selfId,
          allowlist: init.allowlist,
          blocked,
          onRefused: (peerId, reason, direction) => {
            log.warn('peer.refused', { peer: peerId, reason, direction })
            emit('peer:refused', { peerId, reason, direction, at: components.clock.now() })
          }
        }),
        services: {
          identify: identify(),
          // The connection monitor pings too: one outbound ping stream is not enough.
          ping: ping({ maxOutboundStreams: 8, maxInboundStreams: 8 })
        },
        start: false
      })
      node = lib
      reconnector = createReconnector(reconnect, targets, {
        dial: async (t, signal) => { await lib.dial(multiaddr(t.address), { signal }) },
        isConnected: (peerId) => lib.getConnections(peerIdFromString(peerId)).length > 0,
        isBlocked: (peerId) => blocked.has(peerId),
        logger: log
      })
      lib.addEventListener('peer:connect', (evt) => {
        const peerId = evt.detail.toString()
        reconnector?.connected(peerId)
        log.info('peer.connect', { peer: peerId })
        emit('peer:connect', { peerId, at: components.clock.now() })
      })
      lib.addEventListener('peer:disconnect', (evt) => {
        const peerId = evt.detail.toString()
        log.info('peer.disconnect', { peer: peerId })
        emit('peer:disconnect', { peerId, at: components.clock.now() })
        reconnector?.lost(peerId)
      })
      for (const protocol of handlers.keys()) await install(protocol)
      await lib.start()
      // Known addresses let a request to a member dial it even before the keeper has.
      for (const t of targets) await lib.peerStore.merge(peerIdFromString(t.peerId), { multiaddrs: [multiaddr(t.address)] })
      log.info('mesh.started', { peer: selfId, listen: lib.getMultiaddrs().map(String), members: init.allowlist.length, pnet: protector !== undefined })
      reconnector.start()
    })()
    try {
      await starting
    } catch (err) {
      starting = undefined
      node = undefined
      throw err
    }
  }

  const stop = async (): Promise<void> => {
    const pending = starting
    if (pending === undefined) return
    starting = undefined
    await pending.catch(() => {})
    reconnector?.stop()
    const lib = node
    node = undefined
    if (lib !== undefined) await lib.stop()
    log.info('mesh.stopped', { peer: selfId })
  }

  return {
    peerId: selfId,
    start,
    stop,
    isStarted: () => node !== undefined,
    multiaddrs: () => (node?.getMultiaddrs() ?? []).map(String),
    connectedPeers: () => [...new Set((node?.getConnections() ?? []).filter(c => c.status === 'open').map(c => c.remotePeer.toString()))],
    handle,
    handleStream,
    request,
    openStream,
    closePeer,
    refuse: async (peerId, reason) => {
      blocked.set(peerId, reason)
      log.warn('peer.refused', { peer: peerId, reason, direction: 'inbound' })
      emit('peer:refused', { peerId, reason, direction: 'inbound', at: components.clock.now() })
      await closePeer(peerId, reason)
    },
    traffic: () => new Map([...traffic].map(([k, v]) => [k, { ...v }])),
    on: (event, listener) => {
      let set = listeners.get(event)
      if (set === undefined) listeners.set(event, set = new Set())
      set.add(listener as (e: never) => void)
      return () => { set.delete(listener as (e: never) => void) }
    },
    libp2p: () => node
  }
}
