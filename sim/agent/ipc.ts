/**
 * The messages between the simulator and a site's child process. The channel
 * uses Node's advanced serialization, so typed arrays and Maps travel as they
 * are; zod checks each envelope (kind, id, op) as it arrives, and the values
 * inside are the agent's own plain types (sim/agent/types.ts).
 */
import { z } from 'zod'
import type { LogLevel } from '../../coordinator/components.ts'
import type { RoutingConfig } from '../../coordinator/routing/config.ts'
import type { MoeSpec } from '../../node/model/spec.ts'
import type { FederationSettingsInput } from '../../node/site/config.ts'
import type { Topology } from '../topology.ts'
import { OP_NAMES } from './types.ts'

/** What a child needs to build its site: nothing of another site's rows. */
export interface ChildInit {
  topology: Topology
  index: number
  /** The run's folder: the site's store and checkpoint live under it. */
  dir: string
  psk: Uint8Array
  settings: FederationSettingsInput
  spec: MoeSpec
  specHash: string
  slots: number[]
  routing: RoutingConfig
  /** Log levels forwarded to the parent. */
  forward: LogLevel[]
}

const Id = z.number().int().min(0)

/** Parent -> child. */
export const ToChild = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('init'), id: Id, init: z.custom<ChildInit>(v => typeof v === 'object' && v !== null) }),
  z.object({ kind: z.literal('boot'), id: Id, bootstrap: z.array(z.string()) }),
  z.object({ kind: z.literal('call'), id: Id, op: z.enum(OP_NAMES), args: z.unknown() }),
  z.object({ kind: z.literal('abort'), id: Id }),
  z.object({ kind: z.literal('stop'), id: Id })
])
export type ToChild = z.infer<typeof ToChild>

/** Child -> parent. */
export const FromChild = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('reply'), id: Id, ok: z.boolean(), value: z.unknown().optional(), error: z.object({ name: z.string(), message: z.string() }).optional() }),
  z.object({ kind: z.literal('commit'), round: z.number().int().min(0), participants: z.array(z.string()) }),
  z.object({ kind: z.literal('refused'), round: z.number().int().min(0), message: z.string() }),
  z.object({ kind: z.literal('trained'), round: z.number().int().min(0), params: z.instanceof(Map) }),
  z.object({ kind: z.literal('log'), level: z.enum(['debug', 'info', 'warn', 'error']), namespace: z.string(), event: z.string(), fields: z.record(z.string(), z.unknown()).optional() })
])
export type FromChild = z.infer<typeof FromChild>
