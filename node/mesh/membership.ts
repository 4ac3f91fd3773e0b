/**
 * Membership over the mesh: on every new connection this site says hello; the
 * peer answers welcome (with its own hello) or refuse (with a reason). Either
 * side that finds the other incompatible logs the reason and refuses the peer
 * (closed and kept out until restart), so both logs say why.
 */
import type { Logger } from '../../coordinator/components.ts'
import { checkCompatibility, type Hello, MembershipRequest, MembershipResponse } from '../../protocols/membership/membership.ts'
import { MEMBERSHIP_MAX_FRAME_BYTES, MEMBERSHIP_PROTOCOL, MEMBERSHIP_TIMEOUT_MS } from '../../protocols/membership/constants.ts'
import type { SiteHost } from './host.ts'

export interface MembershipInit {
  /** What this site says about itself. */
  hello: Omit<Hello, 'kind'>
}

export interface MembershipComponents {
  host: SiteHost
  logger: Logger
}

export interface MembershipEvents {
  'member:join': { peerId: string, hello: Hello }
  'member:leave': { peerId: string }
  'member:refused': { peerId: string, code: string, reason: string, by: 'us' | 'them' }
}

export interface Membership {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Members whose hello we accepted, by peer id. */
  members: () => Map<string, Hello>
  /** Says hello to a connected peer now (also done on every connect). */
  greet: (peerId: string, options?: { signal?: AbortSignal }) => Promise<Hello | undefined>
  on: <K extends keyof MembershipEvents>(event: K, listener: (e: MembershipEvents[K]) => void) => () => void
}

export function createMembership (init: MembershipInit, components: MembershipComponents): Membership {
  const { host, logger: log } = components
  const own: Hello = { kind: 'hello', ...init.hello }
  const members = new Map<string, Hello>()
  const listeners = new Map<string, Set<(e: never) => void>>()
  const unsubscribe: Array<() => void> = []
  let running = false

  const emit = <K extends keyof MembershipEvents>(event: K, e: MembershipEvents[K]): void => {
    for (const l of listeners.get(event) ?? []) (l as (e: MembershipEvents[K]) => void)(e)
  }

  const admit = (peerId: string, hello: Hello): void => {
    const known = members.has(peerId)
    members.set(peerId, hello)
    if (known) return
    log.info('member.join', { peer: peerId, site: hello.site, roles: hello.roles })
    emit('member:join', { peerId, hello })
  }

  const refuse = async (peerId: string, code: string, reason: string, by: 'us' | 'them'): Promise<void> => {
    members.delete(peerId)
    log.warn('member.refused', { peer: peerId, code, reason, by })
    emit('member:refused', { peerId, code, reason, by })
    await host.refuse(peerId, `${by === 'us' ? 'we refused' : 'they refused'} (${code}): ${reason}`)
  }

  const greet: Membership['greet'] = async (peerId, options = {}) => {
    const response = await host.request(peerId, MEMBERSHIP_PROTOCOL, { header: own }, {
      schema: MembershipResponse, maxFrameBytes: MEMBERSHIP_MAX_FRAME_BYTES, timeoutMs: MEMBERSHIP_TIMEOUT_MS, signal: options.signal
    })
    const answer = response.header
    if (answer.kind === 'refuse') {
      await refuse(peerId, answer.code, answer.reason, 'them')
      return undefined
    }
    const hello: Hello = { ...answer, kind: 'hello' }
    const verdict = checkCompatibility(own, hello)
    if (!verdict.ok) {
      await refuse(peerId, verdict.code, verdict.reason, 'us')
      return undefined
    }
    admit(peerId, hello)
    return hello
  }

  return {
    start: async () => {
      if (running) return
      running = true
      await host.handleStream(MEMBERSHIP_PROTOCOL, async (fs, ctx) => {
        const request = await fs.read(MembershipRequest, { signal: ctx.signal })
        if (request === undefined) return
        const verdict = checkCompatibility(own, request.header)
        if (verdict.ok) {
          await fs.write({ ...own, kind: 'welcome' }, undefined, { signal: ctx.signal })
          await fs.closeWrite({ signal: ctx.signal })
          admit(ctx.peerId, request.header)
          return
        }
        await fs.write({ kind: 'refuse', code: verdict.code, reason: verdict.reason }, undefined, { signal: ctx.signal })
        await fs.closeWrite({ signal: ctx.signal })
        await refuse(ctx.peerId, verdict.code, verdict.reason, 'us')
      }, { maxFrameBytes: MEMBERSHIP_MAX_FRAME_BYTES, timeoutMs: MEMBERSHIP_TIMEOUT_MS })
      unsubscribe.push(host.on('peer:connect', ({ peerId }) => {
        greet(peerId).catch((err: Error) => { log.debug('member.greet.failed', { peer: peerId, error: err.message }) })
      }))
      unsubscribe.push(host.on('peer:disconnect', ({ peerId }) => {
        if (members.delete(peerId)) {
          log.info('member.leave', { peer: peerId })
          emit('member:leave', { peerId })
        }
      }))
      for (const peerId of host.connectedPeers()) {
        greet(peerId).catch((err: Error) => { log.debug('member.greet.failed', { peer: peerId, error: err.message }) })
      }
    },
    stop: async () => {
      running = false
      for (const u of unsubscribe.splice(0)) u()
    },
    members: () => new Map(members),
    greet,
    on: (event, listener) => {
      let set = listeners.get(event)
      if (set === undefined) listeners.set(event, set = new Set())
      set.add(listener as (e: never) => void)
      return () => { set.delete(listener as (e: never) => void) }
    }
  }
}

