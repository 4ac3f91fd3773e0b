/**
 * A libp2p transport that wraps another (@libp2p/tcp, @libp2p/memory) and
 * shapes every connection its site dials through the simulated network:
 *
 *   transports: [shapedTransport({ site: 'alpha', network, inner: tcp() })]
 *
 * Only dialled connections are wrapped (both directions, see connection.ts);
 * inbound ones are passed through, because their dialer already shapes them.
 * Every site of a run must therefore use the wrapper for its links to be
 * shaped. A dial also waits one round trip before the upgrade starts: the TCP
 * handshake that loopback makes free.
 */
import { serviceCapabilities, transportSymbol } from '@libp2p/interface'
import type { CreateListenerOptions, DialTransportOptions, Listener, Transport, Upgrader, Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { LinkPartitionedError } from '../errors.ts'
import type { SimNetwork } from './network.ts'
import { sleep } from '../sleep.ts'

export interface ShapedTransportInit {
  /** The site this transport dials from. */
  site: string
  network: SimNetwork
  /** The real transport's factory, e.g. tcp() or memory(). */
  inner: (components: any) => Transport
}

export function shapedTransport (init: ShapedTransportInit): (components: any) => Transport {
  return (components) => {
    const inner = init.inner(components)
    const wrapper: Transport & Partial<Record<'start' | 'stop' | 'beforeStart' | 'afterStart' | 'beforeStop' | 'afterStop', () => unknown>> & Record<symbol, unknown> = {
      [transportSymbol]: true,
      [Symbol.toStringTag]: `@forgemesh/shaped(${inner[Symbol.toStringTag]})`,
      [serviceCapabilities]: (inner as unknown as Record<symbol, unknown>)[serviceCapabilities] ?? ['@libp2p/transport'],
      dial: async (ma: Multiaddr, options: DialTransportOptions): Promise<Connection> => {
        const remote = init.network.siteOf(ma)
        if (remote === undefined) return await inner.dial(ma, options)
        // Refuse before touching the socket, as a cut cable would.
        if (!init.network.canReach(init.site, remote)) throw new LinkPartitionedError(`network partitioned between ${init.site} and ${remote}`)
        return await inner.dial(ma, { ...options, upgrader: shapingUpgrader(options.upgrader, init, remote) })
      },
      createListener: (options: CreateListenerOptions): Listener => inner.createListener(options),
      listenFilter: (addrs) => inner.listenFilter(addrs),
      dialFilter: (addrs) => inner.dialFilter(addrs)
    }
    // Lifecycle hooks (TCP's metrics, memory's registry) belong to the real transport.
    const hooks = inner as unknown as Record<string, unknown>
    for (const hook of ['start', 'stop', 'beforeStart', 'afterStart', 'beforeStop', 'afterStop'] as const) {
      const fn = hooks[hook]
      if (typeof fn === 'function') wrapper[hook] = () => (fn as () => unknown).call(inner)
    }
    return wrapper
  }
}

function shapingUpgrader (upgrader: Upgrader, init: ShapedTransportInit, remote: string): Upgrader {
  const rtt = init.network.latencyMs(init.site, remote) + init.network.latencyMs(remote, init.site)
  return {
    upgradeOutbound: (async (maConn: Parameters<Upgrader['upgradeOutbound']>[0], opts: Parameters<Upgrader['upgradeOutbound']>[1]) => {
      const shaped = init.network.shape(maConn, init.site, remote)
      if (rtt > 0) await sleep(rtt, opts.signal)
      return await upgrader.upgradeOutbound(shaped, opts)
    }) as Upgrader['upgradeOutbound'],
    upgradeInbound: upgrader.upgradeInbound.bind(upgrader),
    createInboundAbortSignal: (signal) => upgrader.createInboundAbortSignal(signal),
    getStreamMuxers: () => upgrader.getStreamMuxers(),
    getConnectionEncrypters: () => upgrader.getConnectionEncrypters()
  }
}
