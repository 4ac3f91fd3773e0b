export const PROTOCOL_NAME = 'experts-announce'
export const PROTOCOL_VERSION = '1.0.0'
export const EXPERTS_ANNOUNCE_PROTOCOL = `/forgemesh/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/** Announces and revocations are small JSON headers; an inventory travels as a body. */
export const EXPERTS_ANNOUNCE_MAX_FRAME_BYTES = 4 * 1024 * 1024 + 64 * 1024
export const INVENTORY_MAX_BYTES = 4 * 1024 * 1024
/** At most this many artifacts and revocations in one inventory. */
export const INVENTORY_MAX_ENTRIES = 4096
export const EXPERTS_ANNOUNCE_TIMEOUT_MS = 15_000

/**
 * Largest expert artifact a site will fetch: an FFN expert of d = 4096,
 * f = 16384 in float32 is 512 MiB; ours are far smaller.
 */
export const MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024

/** Domain-separation prefixes: a signature over one kind of record can never pass as another. */
export const ARTIFACT_SIGNING_DOMAIN = 'forgemesh-expert-artifact/1\n'
export const REVOCATION_SIGNING_DOMAIN = 'forgemesh-expert-revocation/1\n'

/** safetensors metadata keys of an expert artifact. */
export const META_FORMAT = 'forgemesh.format'
export const META_MANIFEST = 'forgemesh.manifest'
export const META_SIGNATURE = 'forgemesh.signature'
export const ARTIFACT_FORMAT = 'forgemesh-expert-artifact/1'
