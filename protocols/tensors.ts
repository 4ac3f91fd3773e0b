/**
 * The common currency for parameters everywhere in forgemesh: an ordered map
 * from tensor name to a shape and float32 data. Insertion order is the
 * canonical order (codecs, hashes and flattening follow it), so producers
 * insert names in sorted order via `sortedTensorMap`.
 */
export interface Tensor {
  shape: number[]
  data: Float32Array
}

export type TensorMap = Map<string, Tensor>

export function elementCount (shape: readonly number[]): number {
  let n = 1
  for (const d of shape) n *= d
  return n
}

/** A TensorMap with names in ascending code-unit order. */
export function sortedTensorMap (entries: Iterable<[string, Tensor]>): TensorMap {
  return new Map([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

/** Concatenates the named tensors (in the map's order, or `names`) into one vector. */
export function flattenTensors (map: TensorMap, names: readonly string[] = [...map.keys()]): Float32Array {
  let total = 0
  for (const n of names) total += map.get(n)?.data.length ?? missing(n)
  const out = new Float32Array(total)
  let off = 0
  for (const n of names) {
    const t = map.get(n)!
    out.set(t.data, off)
    off += t.data.length
  }
  return out
}

/** Inverse of flattenTensors: slices `flat` back into tensors shaped like `like`. */
export function unflattenTensors (flat: Float32Array, like: TensorMap, names: readonly string[] = [...like.keys()]): TensorMap {
  const out: TensorMap = new Map()
  let off = 0
  for (const n of names) {
    const t = like.get(n) ?? missing(n)
    const len = t.data.length
    if (off + len > flat.length) throw new RangeError(`flat vector of ${flat.length} is too short for tensor '${n}' at ${off}+${len}`)
    out.set(n, { shape: [...t.shape], data: flat.slice(off, off + len) })
    off += len
  }
  if (off !== flat.length) throw new RangeError(`flat vector has ${flat.length} values, the tensors hold ${off}`)
  return out
}

function missing (name: string): never {
  throw new RangeError(`no tensor named '${name}'`)
}
