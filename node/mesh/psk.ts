/**
 * The federation's private-network key (libp2p pnet, "swarm key v1"):
 *   /key/swarm/psk/1.0.0/\n/base16/\n<64 hex digits>
 * Every member holds the same file; a node without it cannot complete even
 * the first handshake with the mesh.
 */
import { readFile, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import type { ConnectionProtector, MessageStream } from '@libp2p/interface'
import { generateKey, preSharedKey } from '@libp2p/pnet'
import { PnetCapacityError, PnetCipherError, PskFileError } from '../errors.ts'

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

/*
 * pnet XORs every byte with xsalsa20 in WebAssembly, and that module keeps ONE
 * memory for the whole process: 64 bytes of state per cipher (two per
 * protected connection, a slot reused only once a cipher is finalized, which
 * pnet never does), then a scratch area for the data of each call. When a call
 * does not fit, the memory grows, and every other cipher is left holding a
 * detached view: on its next call it grows the memory again by its whole
 * scratch size, which detaches the others again, until the 64 MiB cap
 * ("WebAssembly.Memory.grow(): Maximum memory size exceeded"). A 64-site
 * simulation holds 8,064 ciphers (516 KiB of state), so one 256 KiB write no
 * longer fits the initial 640 KiB and the process dies. So:
 *  - the memory is grown ONCE, before the first cipher exists, to 4 MiB;
 *  - no cipher call is handed more than PNET_MAX_XOR_BYTES, in either
 *    direction, whatever the transport delivers;
 *  - a closed connection finalizes its two ciphers, so their slots are reused;
 *  - a connection that would take the state past the reserved memory is
 *    refused (PnetCapacityError) before pnet makes its ciphers.
 * Then the memory never grows again.
 */

/** The largest buffer one cipher call sees; TCP and memory-transport reads are at most this. */
export const PNET_MAX_XOR_BYTES = 64 * 1024
/** What the muxer may hand the protected connection per write (the cipher splits it further). */
export const PNET_MAX_WRITE_BYTES = 256 * 1024
const CIPHER_MEMORY_BYTES = 4 * 1024 * 1024
const CIPHER_STATE_BYTES = 64
/** Ciphers whose state fits beside one call's data (a page kept for the module's own header). */
const CIPHER_CAPACITY = Math.floor((CIPHER_MEMORY_BYTES - PNET_MAX_XOR_BYTES - 64 * 1024) / CIPHER_STATE_BYTES)

interface XorCipher { update: (input: Uint8Array) => Uint8Array, finalize: () => void }
type XorCipherClass = (new (nonce: Uint8Array, key: Uint8Array) => XorCipher) & { [CIPHER_STATE]?: CipherState }
interface CipherState { live: number }
type BoxStream = MessageStream & { inboundXor?: unknown, outboundXor?: unknown, maxMessageSize?: number }

/** Kept on the cipher module itself: it lives as long as the memory it accounts for. */
const CIPHER_STATE = Symbol.for('forgemesh.pnet.cipher-state')

/** The module copy @libp2p/pnet uses (one in node_modules; protect() checks it is the same). */
function cipherModule (): { XSalsa20: XorCipherClass, state: CipherState } {
  const XSalsa20 = createRequire(import.meta.url)('xsalsa20') as XorCipherClass
  let state = XSalsa20[CIPHER_STATE]
  if (state === undefined) {
    // Grow the memory once, while no other cipher can hold a view of it.
    const reserve = new XSalsa20(new Uint8Array(24), new Uint8Array(32))
    reserve.update(new Uint8Array(CIPHER_MEMORY_BYTES))
    reserve.finalize()
    state = { live: 0 }
    XSalsa20[CIPHER_STATE] = state
  }
  return { XSalsa20, state }
}

/** Ciphers alive through boundedPreSharedKey in this process, and how many fit. */
export function pnetCiphers (): { live: number, capacity: number } {
  return { live: cipherModule().state.live, capacity: CIPHER_CAPACITY }
}

export interface BoundedXor {
  /** XORs the input in slices of at most PNET_MAX_XOR_BYTES; after release, returns nothing (the connection is gone). */
  update: (input: Uint8Array) => Uint8Array
  /** Finalizes the cipher once, giving its slot back. */
  release: () => void
}

export function boundedXor (cipher: XorCipher, onRelease: () => void): BoundedXor {
  let released = false
  return {
    update: (input) => {
      if (released) return new Uint8Array(0)
      if (input.byteLength <= PNET_MAX_XOR_BYTES) return cipher.update(input)
      const out = new Uint8Array(input.byteLength)
      for (let off = 0; off < input.byteLength; off += PNET_MAX_XOR_BYTES) {
        out.set(cipher.update(input.subarray(off, off + PNET_MAX_XOR_BYTES)), off)
      }
      return out
    },
    release: () => {
      if (released) return
      released = true
      try {
        cipher.finalize()
      } catch {
        // A detached view (the memory grew outside this bound) cannot be cleared; its slot stays taken.
        return
      }
      onRelease()
    }
  }
}

export function boundedPreSharedKey (psk: Uint8Array): (components: unknown) => ConnectionProtector {
  const make = preSharedKey({ psk: parsePsk(psk), timeout: 10_000 })
  const { XSalsa20, state } = cipherModule()
  return () => {
    const inner = make()
    return {
      protect: async (connection, options) => {
        if (state.live + 2 > CIPHER_CAPACITY) {
          throw new PnetCapacityError(`this process already holds ${state.live} pnet ciphers, the most its reserved cipher memory fits (${CIPHER_CAPACITY}); connection refused`)
        }
        state.live += 2
        let box: BoxStream
        try {
          box = await inner.protect(connection, options) as BoxStream
        } catch (err) {
          state.live -= 2
          throw err
        }
        const { inboundXor, outboundXor } = box
        if (!(inboundXor instanceof XSalsa20) || !(outboundXor instanceof XSalsa20)) {
          state.live -= 2
          const err = new PnetCipherError('@libp2p/pnet no longer exposes its xsalsa20 ciphers as this code expects; the cipher memory bound cannot be kept')
          box.abort(err)
          throw err
        }
        const release = (): void => { state.live -= 1 }
        const inbound = boundedXor(inboundXor, release)
        const outbound = boundedXor(outboundXor, release)
        box.inboundXor = inbound
        box.outboundXor = outbound
        box.maxMessageSize = PNET_MAX_WRITE_BYTES
        const close = (): void => { inbound.release(); outbound.release() }
        box.addEventListener('close', close, { once: true })
        if (box.status !== 'open') close()
        return box
      }
    }
  }
}
