/**
 * Withdrawal of an expert: a revocation signed by the site that owns it.
 * Only the owner can withdraw (the key is looked up by the revocation's own
 * siteId), and every version up to `upToVersion` stops being usable.
 */
import type { Clock } from '../../coordinator/components.ts'
import { Revocation, revocationSigningBytes, SignedRevocation } from '../../protocols/experts-announce/records.ts'
import { ArtifactFormatError, ArtifactSignatureError, NotAMemberError } from '../errors.ts'
import { verifySignature, type SiteIdentity } from '../identity.ts'
import { describe, type MemberKeys } from './artifact.ts'

export type { Revocation, SignedRevocation } from '../../protocols/experts-announce/records.ts'

export async function signRevocation (
  input: { identity: SiteIdentity, expertId: string, upToVersion: number, reason?: string },
  components: { clock: Clock }
): Promise<SignedRevocation> {
  const parsed = Revocation.safeParse({
    siteId: input.identity.peerId,
    expertId: input.expertId,
    upToVersion: input.upToVersion,
    reason: input.reason ?? '',
    createdAt: Math.floor(components.clock.now())
  })
  if (!parsed.success) throw new ArtifactFormatError(`cannot build revocation: ${describe(parsed.error)}`)
  const signature = Buffer.from(await input.identity.sign(revocationSigningBytes(parsed.data))).toString('base64')
  return { revocation: parsed.data, signature }
}

/** Checks shape, membership and signature of a revocation from anywhere (the wire, the store). */
export async function verifyRevocation (input: unknown, members: MemberKeys): Promise<SignedRevocation> {
  const parsed = SignedRevocation.safeParse(input)
  if (!parsed.success) throw new ArtifactFormatError(`revocation ${describe(parsed.error)}`)
  const { revocation, signature } = parsed.data
  const key = members.get(revocation.siteId)
  if (key === undefined) throw new NotAMemberError(`revocation of expert '${revocation.expertId}' claims to come from ${revocation.siteId}, which is not a member`)
  if (!await verifySignature(key, revocationSigningBytes(revocation), Buffer.from(signature, 'base64'))) {
    throw new ArtifactSignatureError(`revocation of expert '${revocation.expertId}': the signature does not verify with the key of ${revocation.siteId}`)
  }
  return parsed.data
}
