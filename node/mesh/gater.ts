/**
 * The allowlist, enforced in libp2p's connection gater on both directions.
 * pnet keeps out whoever lacks the federation key but does not say who a peer
 * is; the gater does, at the first hook that knows the remote peer id (after
 * the Noise handshake), so a stranger never gets a muxer, let alone a stream.
 */
import type { ConnectionGater, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface AllowlistGaterInit {
  selfId: string
  allowlist: readonly string[]
  /** Peers refused at run time (an incompatible hello); checked like the allowlist. */
  blocked: ReadonlyMap<string, string>
  onRefused: (peerId: string, reason: string, direction: 'inbound' | 'outbound') => void
}

export function allowlistGater (init: AllowlistGaterInit): ConnectionGater {
  const allowed = new Set([...init.allowlist, init.selfId])
  const deny = (peer: PeerId, direction: 'inbound' | 'outbound'): boolean => {
    const id = peer.toString()
    const blockedFor = init.blocked.get(id)
    const reason = blockedFor !== undefined ? `refused earlier: ${blockedFor}` : allowed.has(id) ? undefined : 'not on the allowlist'
    if (reason === undefined) return false
    init.onRefused(id, reason, direction)
    return true
  }
  return {
    denyDialPeer: (peer) => deny(peer, 'outbound'),
    denyDialMultiaddr: (ma: Multiaddr) => {
      // A dial to an address that names its peer can be refused before any bytes move.
      const id = ma.getComponents().find(c => c.name === 'p2p')?.value
      return id !== undefined && !allowed.has(id)
    },
    denyInboundEncryptedConnection: (peer) => deny(peer, 'inbound'),
    denyOutboundEncryptedConnection: (peer) => deny(peer, 'outbound'),
    denyInboundUpgradedConnection: (peer) => deny(peer, 'inbound'),
    denyOutboundUpgradedConnection: (peer) => deny(peer, 'outbound')
  }
}
