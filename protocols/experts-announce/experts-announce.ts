/**
 * experts-announce: a site tells members "I hold artifact <hash>" or "I
 * withdraw my expert" (a signed revocation, carried inline), and a member
 * that joins late asks for the inventory. The announce is only a hint: the
 * receiver fetches the bytes over the artifact protocol and trusts nothing
 * until the artifact verifies.
 */
import { z } from 'zod'
import { FrameDecodeError } from '../errors.ts'
import { INVENTORY_MAX_BYTES, INVENTORY_MAX_ENTRIES, MAX_ARTIFACT_BYTES } from './constants.ts'
import { Hex64, SignedRevocation } from './records.ts'

export const Announce = z.strictObject({
  kind: z.literal('announce'),
  hash: Hex64,
  size: z.number().int().min(1).max(MAX_ARTIFACT_BYTES)
})
export const Revoke = z.strictObject({ kind: z.literal('revoke'), signed: SignedRevocation })
export const ListRequest = z.strictObject({ kind: z.literal('list') })
export const AnnounceRequest = z.discriminatedUnion('kind', [Announce, Revoke, ListRequest])
export type AnnounceRequest = z.infer<typeof AnnounceRequest>

export const ACK_STATUSES = ['queued', 'known', 'rejected', 'applied'] as const
export const Ack = z.strictObject({
  kind: z.literal('ack'),
  status: z.enum(ACK_STATUSES),
  reason: z.string().max(1024).optional()
})
export type Ack = z.infer<typeof Ack>
/** The inventory itself travels as a JSON body of `bytes` bytes (it can outgrow a header). */
export const InventoryHeader = z.strictObject({ kind: z.literal('inventory'), bytes: z.number().int().min(2).max(INVENTORY_MAX_BYTES) })
export type InventoryHeader = z.infer<typeof InventoryHeader>
export const AnnounceResponse = z.discriminatedUnion('kind', [Ack, InventoryHeader])
export type AnnounceResponse = z.infer<typeof AnnounceResponse>

export const Inventory = z.strictObject({
  artifacts: z.array(z.strictObject({ hash: Hex64, size: z.number().int().min(1).max(MAX_ARTIFACT_BYTES) })).max(INVENTORY_MAX_ENTRIES),
  revocations: z.array(SignedRevocation).max(INVENTORY_MAX_ENTRIES)
})
export type Inventory = z.infer<typeof Inventory>

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * An inventory body as received: exactly the size its header announced, then
 * UTF-8 JSON, then the schema. Every failure is a FrameDecodeError (a bad
 * body must never surface as a bare SyntaxError or TypeError).
 */
export function decodeInventory (header: InventoryHeader, body: Uint8Array | undefined): Inventory {
  const size = body?.byteLength ?? 0
  if (body === undefined || size !== header.bytes) throw new FrameDecodeError(`inventory body of ${size} bytes, the header announced ${header.bytes}`)
  let json: unknown
  try {
    json = JSON.parse(utf8.decode(body))
  } catch (err) {
    throw new FrameDecodeError('inventory body is not UTF-8 JSON', { cause: err })
  }
  const parsed = Inventory.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new FrameDecodeError(`inventory rejected: ${issue === undefined ? 'invalid' : `${issue.path.join('.') || '(root)'}: ${issue.message}`}`)
  }
  return parsed.data
}
