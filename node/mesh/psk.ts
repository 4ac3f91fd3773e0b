/**
 * The federation's private-network key (libp2p pnet, "swarm key v1"):
 *   /key/swarm/psk/1.0.0/\n/base16/\n<64 hex digits>
 * Every member holds the same file; a node without it cannot complete even
 * the first handshake with the mesh.
 */
import { readFile, stat } from 'node:fs/promises'
import type { ConnectionProtector, MessageStream } from '@libp2p/interface'
import { generateKey, preSharedKey } from '@libp2p/pnet'
import { PskFileError } from '../errors.ts'

const PSK_RE = /^\/key\/swarm\/psk\/1\.0\.0\/\r?\n\/base16\/\r?\n([0-9a-f]{64})\s*$/
/** The format is ~95 bytes; refuse to read anything much larger. */
const MAX_PSK_FILE_BYTES = 1024

/** A fresh key file's contents (32 random bytes, hex) as pnet expects it. */
export function generatePsk (): Uint8Array {
  const out = new Uint8Array(95)
  generateKey(out)
  return out
}

/** Checks a key file's contents; returns them unchanged (pnet parses them itself). */
export function parsePsk (bytes: Uint8Array, source = 'PSK'): Uint8Array {
  if (bytes.byteLength > MAX_PSK_FILE_BYTES) throw new PskFileError(`${source} is ${bytes.byteLength} bytes, not a swarm key`)
  const text = Buffer.from(bytes).toString('utf8')
  if (!PSK_RE.test(text)) throw new PskFileError(`${source} is not a swarm key (expected /key/swarm/psk/1.0.0/, /base16/ and 64 lowercase hex digits)`)
  return bytes
}

export async function loadPsk (path: string): Promise<Uint8Array> {
  let info
  try {
    info = await stat(path)
  } catch (err) {
    throw new PskFileError(`cannot read the federation key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  if (!info.isFile() || info.size > MAX_PSK_FILE_BYTES) throw new PskFileError(`${path} is not a federation key file`)
  return parsePsk(new Uint8Array(await readFile(path)), path)
}

/**
 * pnet XORs each outgoing write with xsalsa20 in WebAssembly. Its memory grows
 * to fit the largest write, and after one cipher instance grows it the others
 * hold a detached view and grow it again by their whole input: with yamux
 * writes of 16 MiB a bulk transfer dies at the 64 MiB cap
 * ("WebAssembly.Memory.grow(): Maximum memory size exceeded"). Capping the
 * protected connection's write size keeps every XOR inside the initial
 * 640 KiB, so the memory never grows at all.
 */
export const PNET_MAX_WRITE_BYTES = 256 * 1024

export function boundedPreSharedKey (psk: Uint8Array): (components: unknown) => ConnectionProtector {
  const make = preSharedKey({ psk: parsePsk(psk), timeout: 10_000 })
  return () => {
    const inner = make()
    return {
      protect: async (connection, options) => {
        const out = await inner.protect(connection, options)
        ;(out as MessageStream & { maxMessageSize?: number }).maxMessageSize = PNET_MAX_WRITE_BYTES
        return out
      }
    }
  }
}
