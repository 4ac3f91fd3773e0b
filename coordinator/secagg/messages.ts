/**
 * The messages of one secure-aggregation round (Bonawitz et al. 2017,
 * "Practical Secure Aggregation for Privacy-Preserving Machine Learning"),
 * as plain data. The node layer carries them over the mesh; every one is
 * validated here with zod before it is used. Stages, with the set of members
 * still present after each:
 *
 *   0 advertise    client -> server: two X25519 public keys + a commitment, signed   U1
 *                  server -> all:    the roster of U1
 *   1 share keys   client -> server: Shamir shares of its mask key and self-mask
 *                                    seed, one AEAD box per other member          U2
 *                  server -> each:   the boxes addressed to it
 *   2 masked input client -> server: the masked, quantised update                 U3
 *                  server -> all:    the list U3
 *   3 consistency  client -> server: a signature over U3                          U4
 *                  server -> all:    U3 and the signatures
 *   4 unmask       client -> server: shares of mask keys of members that dropped
 *                                    (U2 \ U3), of self-mask seeds of U3          U5
 *
 * Each stage needs at least `threshold` members, or the round aborts.
 */
import { z } from 'zod'
import { KEY_BYTES } from './primitives.ts'
import { SHARE_BYTES } from './shamir.ts'

export const SECAGG_VERSION = 'forgemesh/secagg/1'
export const MAX_SITE_ID_LENGTH = 128
export const MAX_SIGNATURE_BYTES = 512

// z.custom keeps the plain Uint8Array type (z.instanceof narrows it to an ArrayBuffer-backed one).
const bytes = (len?: number) => z.custom<Uint8Array>(
  b => b instanceof Uint8Array && (len === undefined ? b.length <= MAX_SIGNATURE_BYTES : b.length === len),
  { message: len === undefined ? `expected at most ${MAX_SIGNATURE_BYTES} bytes` : `expected exactly ${len} bytes` }
)

export const SiteIdSchema = z.string().min(1).max(MAX_SITE_ID_LENGTH)
const RoundId = z.string().min(1).max(256)

export const AdvertiseSchema = z.object({
  type: z.literal('secagg/advertise'),
  roundId: RoundId,
  siteId: SiteIdSchema,
  /** Public key for the share boxes (c_u^PK in the paper). */
  encPk: bytes(KEY_BYTES),
  /** Public key for the pairwise masks (s_u^PK). */
  maskPk: bytes(KEY_BYTES),
  /** sha256 commitment to the self-mask seed b_u: detects a tampered reconstruction. */
  selfCommit: bytes(32),
  signature: bytes()
})
export type AdvertiseMessage = z.infer<typeof AdvertiseSchema>

export const RosterSchema = z.object({
  type: z.literal('secagg/roster'),
  roundId: RoundId,
  advertisements: z.array(AdvertiseSchema).max(1000)
})
export type RosterMessage = z.infer<typeof RosterSchema>

/** A share box: ChaCha20-Poly1305 over (mask-key share || self-seed share). */
export const BOX_BYTES = 2 * SHARE_BYTES + 16

export const SharesSchema = z.object({
  type: z.literal('secagg/shares'),
  roundId: RoundId,
  from: SiteIdSchema,
  boxes: z.array(z.object({ to: SiteIdSchema, box: bytes(BOX_BYTES) })).max(1000)
})
export type SharesMessage = z.infer<typeof SharesSchema>

export const DeliverySchema = z.object({
  type: z.literal('secagg/delivery'),
  roundId: RoundId,
  to: SiteIdSchema,
  /** U2: every member whose shares the server accepted. */
  senders: z.array(SiteIdSchema).max(1000),
  boxes: z.array(z.object({ from: SiteIdSchema, box: bytes(BOX_BYTES) })).max(1000)
})
export type DeliveryMessage = z.infer<typeof DeliverySchema>

export const MaskedInputSchema = z.object({
  type: z.literal('secagg/masked'),
  roundId: RoundId,
  from: SiteIdSchema,
  /** Values of Z_2^k, k = ringBits (reduced to the low k bits). */
  masked: z.custom<Uint32Array>(v => v instanceof Uint32Array, { message: 'expected a Uint32Array' })
})
export type MaskedInputMessage = z.infer<typeof MaskedInputSchema>

export const SurvivorsSchema = z.object({
  type: z.literal('secagg/survivors'),
  roundId: RoundId,
  /** U3: every member whose masked input the server accepted. */
  survivors: z.array(SiteIdSchema).max(1000)
})
export type SurvivorsMessage = z.infer<typeof SurvivorsSchema>

export const ConsistencySchema = z.object({
  type: z.literal('secagg/consistency'),
  roundId: RoundId,
  from: SiteIdSchema,
  signature: bytes()
})
export type ConsistencyMessage = z.infer<typeof ConsistencySchema>

export const UnmaskRequestSchema = z.object({
  type: z.literal('secagg/unmask-request'),
  roundId: RoundId,
  survivors: z.array(SiteIdSchema).max(1000),
  signatures: z.array(z.object({ siteId: SiteIdSchema, signature: bytes() })).max(1000)
})
export type UnmaskRequestMessage = z.infer<typeof UnmaskRequestSchema>

const ShareOf = z.object({ of: SiteIdSchema, share: bytes(SHARE_BYTES) })

export const UnmaskSchema = z.object({
  type: z.literal('secagg/unmask'),
  roundId: RoundId,
  from: SiteIdSchema,
  /** Shares of s_v^SK for v in U2 \ U3 (members that dropped before masking). */
  maskKeyShares: z.array(ShareOf).max(1000),
  /** Shares of b_v for v in U3. */
  selfSeedShares: z.array(ShareOf).max(1000)
})
export type UnmaskMessage = z.infer<typeof UnmaskSchema>

const encoder = new TextEncoder()

export type SecAggMessage = AdvertiseMessage | RosterMessage | SharesMessage | DeliveryMessage | MaskedInputMessage |
SurvivorsMessage | ConsistencyMessage | UnmaskRequestMessage | UnmaskMessage

/** Bytes a message occupies on the wire, counting its binary fields, ids and a 16-byte header each. */
export function messageBytes (m: SecAggMessage, ringBits: 16 | 32 = 32): number {
  const id = (s: string): number => 2 + encoder.encode(s).length
  const head = 16 + id(m.roundId)
  switch (m.type) {
    case 'secagg/advertise': return head + id(m.siteId) + m.encPk.length + m.maskPk.length + m.selfCommit.length + 2 + m.signature.length
    case 'secagg/roster': return head + m.advertisements.reduce((a, x) => a + messageBytes(x), 0)
    case 'secagg/shares': return head + id(m.from) + m.boxes.reduce((a, b) => a + id(b.to) + b.box.length, 0)
    case 'secagg/delivery': return head + id(m.to) + m.senders.reduce((a, s) => a + id(s), 0) + m.boxes.reduce((a, b) => a + id(b.from) + b.box.length, 0)
    case 'secagg/masked': return head + id(m.from) + m.masked.length * ringBits / 8
    case 'secagg/survivors': return head + m.survivors.reduce((a, s) => a + id(s), 0)
    case 'secagg/consistency': return head + id(m.from) + 2 + m.signature.length
    case 'secagg/unmask-request': return head + m.survivors.reduce((a, s) => a + id(s), 0) + m.signatures.reduce((a, s) => a + id(s.siteId) + 2 + s.signature.length, 0)
    case 'secagg/unmask': return head + id(m.from) + [...m.maskKeyShares, ...m.selfSeedShares].reduce((a, s) => a + id(s.of) + s.share.length, 0)
    default: {
      const never: never = m
      return never
    }
  }
}
