/**
 * Where transferred blobs come from and go to, in ranges, so a 1 GiB model
 * never sits in memory whole. A file sink writes `<path>.part` and renames it
 * to `<path>` only once the hash checks out; a `.part` left by a crash is
 * resumed from its length.
 */
import type { Hash } from 'node:crypto'
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { BlobNotFoundError } from '../errors.ts'

export interface BlobSource {
  getBlobSize: (hash: string) => Promise<number | undefined>
  getBlobRange: (hash: string, offset: number, length: number) => Promise<Uint8Array>
}

export interface BlobSink {
  /** Bytes already held from an earlier attempt (0 for a fresh sink). */
  size: () => Promise<number>
  /** Feeds the first `length` bytes held to `hasher` (to resume a hash). */
  rehash: (hasher: Hash, length: number) => Promise<void>
  /** Bytes at `offset`: one buffer, or several written back to back (a chunk as it arrived). */
  write: (offset: number, bytes: Uint8Array | readonly Uint8Array[]) => Promise<void>
  /** Optional: the peer says the blob has `total` bytes (a hint; may be a lie, so never trusted for more than room). */
  reserve?: (total: number) => void
  /** The blob is verified: make it final. */
  commit: () => Promise<void>
  /** The blob failed verification: throw it away. */
  discard: () => Promise<void>
}

const REHASH_CHUNK = 4 * 1024 * 1024
/**
 * A memory sink told the size up front writes into one buffer of that size:
 * no copy per chunk and none at the end. Larger claims keep the chunk list.
 * The buffer is only reserved; its pages are mapped as bytes arrive.
 */
const MEMORY_RESERVE_MAX_BYTES = 1024 * 1024 * 1024

export function memorySink (): BlobSink & { bytes: () => Uint8Array } {
  let chunks: Uint8Array[] = []
  let whole: Uint8Array | undefined
  let length = 0
  const held = (): Uint8Array[] => whole === undefined ? chunks : [whole.subarray(0, length)]
  return {
    size: async () => length,
    rehash: async (hasher) => { for (const c of held()) hasher.update(c) },
    reserve: (total) => {
      if (whole !== undefined || !(Number.isSafeInteger(total) && total > length && total <= MEMORY_RESERVE_MAX_BYTES)) return
      whole = new Uint8Array(total)
      let off = 0
      for (const c of chunks) { whole.set(c, off); off += c.byteLength }
      chunks = []
    },
    write: async (offset, bytes) => {
      if (offset !== length) throw new RangeError(`memory sink holds ${length} bytes; cannot write at ${offset}`)
      for (const b of bytes instanceof Uint8Array ? [bytes] : bytes) {
        if (whole !== undefined && length + b.byteLength <= whole.byteLength) whole.set(b, length)
        else {
          if (whole !== undefined) { chunks = [whole.subarray(0, length)]; whole = undefined }
          chunks.push(b.slice())
        }
        length += b.byteLength
      }
    },
    commit: async () => {},
    discard: async () => { chunks = []; whole = undefined; length = 0 },
    bytes: () => {
      if (whole !== undefined) return length === whole.byteLength ? whole : whole.slice(0, length)
      const out = new Uint8Array(length)
      let off = 0
      for (const c of chunks) { out.set(c, off); off += c.byteLength }
      return out
    }
  }
}

export function fileSink (path: string): BlobSink {
  const part = `${path}.part`
  let fh: FileHandle | undefined
  const handle = async (): Promise<FileHandle> => (fh ??= await open(part, 'a+', 0o600))
  const close = async (): Promise<void> => {
    const h = fh
    fh = undefined
    await h?.close()
  }
  return {
    size: async () => {
      try { return (await stat(part)).size } catch { return 0 }
    },
    rehash: async (hasher, length) => {
      const h = await handle()
      const buf = new Uint8Array(Math.min(REHASH_CHUNK, Math.max(1, length)))
      for (let off = 0; off < length;) {
        const { bytesRead } = await h.read(buf, 0, Math.min(buf.byteLength, length - off), off)
        if (bytesRead === 0) throw new RangeError(`${part} is shorter than ${length} bytes`)
        hasher.update(buf.subarray(0, bytesRead))
        off += bytesRead
      }
    },
    write: async (offset, bytes) => {
      const h = await handle()
      // Several buffers go down in one writev; a short write continues where it stopped.
      let left = (bytes instanceof Uint8Array ? [bytes] : [...bytes]).filter(b => b.byteLength > 0)
      let at = offset
      while (left.length > 0) {
        const { bytesWritten } = await h.writev(left, at)
        at += bytesWritten
        let skip = bytesWritten
        while (left.length > 0 && skip >= left[0]!.byteLength) { skip -= left[0]!.byteLength; left = left.slice(1) }
        if (skip > 0) left[0] = left[0]!.subarray(skip)
      }
    },
    commit: async () => {
      await (await handle()).sync()
      await close()
      await rename(part, path)
    },
    discard: async () => {
      await close()
      await rm(part, { force: true })
    }
  }
}

/** Serves whole files by hash; a range is read from disk when asked for. */
export function fileBlobSource (files: ReadonlyMap<string, string>): BlobSource & { close: () => Promise<void> } {
  const handles = new Map<string, Promise<FileHandle>>()
  const handleOf = (hash: string): Promise<FileHandle> => {
    const path = files.get(hash)
    if (path === undefined) throw new BlobNotFoundError(`no blob ${hash}`)
    let h = handles.get(hash)
    if (h === undefined) handles.set(hash, h = open(path, 'r'))
    return h
  }
  return {
    getBlobSize: async (hash) => {
      const path = files.get(hash)
      if (path === undefined) return undefined
      return (await stat(path)).size
    },
    getBlobRange: async (hash, offset, length) => {
      const h = await handleOf(hash)
      const out = new Uint8Array(length)
      let done = 0
      while (done < length) {
        const { bytesRead } = await h.read(out, done, length - done, offset + done)
        if (bytesRead === 0) throw new BlobNotFoundError(`blob ${hash} ends before ${offset + length}`)
        done += bytesRead
      }
      return out
    },
    close: async () => {
      const all = [...handles.values()]
      handles.clear()
      for (const h of all) await (await h).close()
    }
  }
}

export function memoryBlobSource (blobs: ReadonlyMap<string, Uint8Array>): BlobSource {
  return {
    getBlobSize: async (hash) => blobs.get(hash)?.byteLength,
    getBlobRange: async (hash, offset, length) => {
      const b = blobs.get(hash)
      if (b === undefined) throw new BlobNotFoundError(`no blob ${hash}`)
      return b.subarray(offset, offset + length)
    }
  }
}
