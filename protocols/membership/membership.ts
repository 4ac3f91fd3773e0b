/**
 * Membership: on connect each side says hello (site, roles, capabilities,
 * model-spec hash, protocol versions). A peer whose model spec differs, or
 * which lacks a protocol we speak at the same major version, is refused with
 * a reason both sides log.
 */
import { z } from 'zod'

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex sha256')
const Label = z.string().min(1).max(64).regex(/^[A-Za-z0-9._:-]+$/, 'letters, digits and . _ : -')
/** A protocol id: /forgemesh/<name>/<major>.<minor>.<patch> */
export const ProtocolId = z.string().max(128).regex(/^\/forgemesh\/[a-z0-9-]+\/\d+\.\d+\.\d+$/, 'a /forgemesh/<name>/<semver> id')

export const Hello = z.object({
  kind: z.literal('hello'),
  site: Label,
  roles: z.array(Label).max(16),
  capabilities: z.array(Label).max(64),
  modelSpecHash: Hex64,
  protocols: z.array(ProtocolId).max(64)
}).strict()
export type Hello = z.infer<typeof Hello>

export const Welcome = Hello.extend({ kind: z.literal('welcome') }).strict()
export type Welcome = z.infer<typeof Welcome>

export const REFUSAL_CODES = ['model-spec-mismatch', 'protocol-mismatch', 'duplicate-site', 'refused'] as const
export const Refuse = z.object({
  kind: z.literal('refuse'),
  code: z.enum(REFUSAL_CODES),
  reason: z.string().max(1024)
}).strict()
export type Refuse = z.infer<typeof Refuse>

export const MembershipRequest = Hello
export const MembershipResponse = z.discriminatedUnion('kind', [Welcome, Refuse])
export type MembershipResponse = z.infer<typeof MembershipResponse>

export type Compatibility = { ok: true } | { ok: false, code: Refuse['code'], reason: string }

function byName (ids: readonly string[]): Map<string, number> {
  const out = new Map<string, number>()
  for (const id of ids) {
    const [, , name, version] = id.split('/')
    out.set(name!, Number(version!.split('.')[0]))
  }
  return out
}

/** Whether `remote` can take part with `local`; the reason is written for an operator. */
export function checkCompatibility (local: Omit<Hello, 'kind'>, remote: Omit<Hello, 'kind'>): Compatibility {
  if (local.modelSpecHash !== remote.modelSpecHash) {
    return { ok: false, code: 'model-spec-mismatch', reason: `site '${remote.site}' runs model spec ${remote.modelSpecHash.slice(0, 12)}…, this site runs ${local.modelSpecHash.slice(0, 12)}…` }
  }
  const theirs = byName(remote.protocols)
  for (const [name, major] of byName(local.protocols)) {
    const other = theirs.get(name)
    if (other !== major) {
      return { ok: false, code: 'protocol-mismatch', reason: `site '${remote.site}' ${other === undefined ? `does not speak ${name}` : `speaks ${name} ${other}.x, this site ${major}.x`}` }
    }
  }
  return { ok: true }
}
