/**
 * The site's identity: an Ed25519 key persisted with the site. Its peer id is
 * the site's name on the mesh, and expert artifacts are signed with it. The
 * key file is written 0600 and the key is never logged: the identity object
 * prints (inspect, JSON) as its peer id only.
 */
import { chmod, mkdir, open, readFile, rename, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { inspect } from 'node:util'
import { generateKeyPair, generateKeyPairFromSeed, privateKeyFromProtobuf, privateKeyToProtobuf, publicKeyFromRaw } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromPublicKey as peerIdOfKey } from '@libp2p/peer-id'
import { z } from 'zod'
import { IdentityFileError } from './errors.ts'

export interface SiteIdentity {
  /** libp2p Ed25519 private key: pass to the host, never to a logger. */
  readonly privateKey: PrivateKey
  readonly peerId: string
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  sign: (bytes: Uint8Array) => Promise<Uint8Array>
}

const IdentityFile = z.object({
  v: z.literal(1),
  type: z.literal('Ed25519'),
  /** libp2p protobuf encoding of the private key, base64. */
  privateKey: z.string().max(1024)
}).strict()

/** Largest identity file read: a few hundred bytes is all it ever holds. */
const MAX_IDENTITY_FILE_BYTES = 4096

function wrap (privateKey: PrivateKey): SiteIdentity {
  if (privateKey.type !== 'Ed25519') throw new IdentityFileError(`site identity must be an Ed25519 key, got ${privateKey.type}`)
  const peerId = peerIdFromPrivateKey(privateKey).toString()
  const identity: SiteIdentity = {
    privateKey,
    peerId,
    publicKey: privateKey.publicKey.raw,
    sign: async (bytes) => await privateKey.sign(bytes)
  }
  // Whatever prints the identity prints its peer id, never the key.
  Object.defineProperty(identity, 'privateKey', { enumerable: false })
  Object.defineProperty(identity, 'toJSON', { enumerable: false, value: () => ({ peerId }) })
  Object.defineProperty(identity, inspect.custom, { enumerable: false, value: () => `SiteIdentity(${peerId})` })
  return identity
}

/**
 * An identity derived from 32 seed bytes, held only in memory. For the
 * simulator and tests, where a replayed run must elect the same coordinator
 * (election orders by peer id); a real site always uses loadOrCreateIdentity.
 */
export async function identityFromSeed (seed: Uint8Array): Promise<SiteIdentity> {
  if (seed.length !== 32) throw new IdentityFileError(`an identity seed must be 32 bytes, got ${seed.length}`)
  return wrap(await generateKeyPairFromSeed('Ed25519', seed))
}

export async function loadOrCreateIdentity (path: string): Promise<SiteIdentity> {
  let info
  try {
    info = await stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new IdentityFileError(`cannot read the identity file ${path}: ${(err as Error).message}`)
    return await createIdentity(path)
  }
  if (!info.isFile() || info.size > MAX_IDENTITY_FILE_BYTES) throw new IdentityFileError(`${path} is not an identity file (${info.size} bytes)`)
  if ((info.mode & 0o077) !== 0) {
    throw new IdentityFileError(`identity file ${path} is readable by others (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 on it`)
  }
  let parsed
  try {
    parsed = IdentityFile.safeParse(JSON.parse(await readFile(path, 'utf8')))
  } catch {
    throw new IdentityFileError(`identity file ${path} is not valid JSON`)
  }
  if (!parsed.success) throw new IdentityFileError(`identity file ${path} does not match its schema`)
  try {
    return wrap(privateKeyFromProtobuf(Buffer.from(parsed.data.privateKey, 'base64')))
  } catch (err) {
    if (err instanceof IdentityFileError) throw err
    // The cause may quote key bytes: keep it out of the message and the chain.
    throw new IdentityFileError(`identity file ${path} holds no valid Ed25519 key`)
  }
}

async function createIdentity (path: string): Promise<SiteIdentity> {
  const key = await generateKeyPair('Ed25519')
  const body = JSON.stringify({ v: 1, type: 'Ed25519', privateKey: Buffer.from(privateKeyToProtobuf(key)).toString('base64') }) + '\n'
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  // Written under a temporary name with 0600 from the first byte, then renamed:
  // a crash never leaves a half-written or world-readable key behind.
  const tmp = `${path}.${process.pid}.tmp`
  const fh = await open(tmp, 'wx', 0o600)
  try {
    await fh.writeFile(body)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await chmod(tmp, 0o600)
  await rename(tmp, path)
  return wrap(key)
}

export async function verifySignature (publicKeyRaw: Uint8Array, bytes: Uint8Array, sig: Uint8Array): Promise<boolean> {
  try {
    return await publicKeyFromRaw(publicKeyRaw).verify(bytes, sig)
  } catch {
    return false
  }
}

export function peerIdFromPublicKey (raw: Uint8Array): string {
  return peerIdOfKey(publicKeyFromRaw(raw)).toString()
}
