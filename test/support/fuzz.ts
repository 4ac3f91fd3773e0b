/**
 * Shared pieces of the fuzz suites (test/mesh-fuzz.test.ts,
 * test/fuzz-*.test.ts): seeded random bytes, byte-level and structure-aware
 * damage, and a tally that sorts every outcome into accepted, rejected with
 * one of our named errors, or escaped (anything else: the bug we look for).
 */
import type { Random } from '../../coordinator/components.ts'
import { ForgemeshError } from '../../protocols/errors.ts'

/** Values a hostile peer would try in any field. */
export const WEIRD: unknown[] = [null, -1, 1e308, 2 ** 53, '', 'x'.repeat(300), [], {}, true, NaN, 'latest', { kind: 'error' }, [1, 2], 0.5]

/** A fresh copy of one of WEIRD (damage may nest into it later; the shared ones must stay as they are). */
export function weird (rng: Random): unknown {
  return structuredClone(WEIRD[rng.int(WEIRD.length)])
}

export function randomBytes (rng: Random, n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = rng.int(256)
  return out
}

/** Byte-level damage to a frame: flips, overwrites, cuts, growth, and hostile length fields. */
export function mutateBytes (rng: Random, src: Uint8Array): Uint8Array {
  let b = src.slice()
  const rounds = 1 + rng.int(4)
  for (let r = 0; r < rounds; r++) {
    switch (rng.int(6)) {
      case 0: if (b.length > 0) b[rng.int(b.length)]! ^= 1 << rng.int(8); break
      case 1: if (b.length > 0) b[rng.int(b.length)] = rng.int(256); break
      case 2: b = b.subarray(0, rng.int(b.length + 1)); break
      case 3: b = new Uint8Array([...b, ...randomBytes(rng, rng.int(64))]); break
      case 4: if (b.length >= 4) new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(0, [0xffffffff, b.length - 4, b.length + rng.int(9) - 4, rng.int(2 ** 32)][rng.int(4)]! >>> 0); break
      default: {
        // The frame's header length, or a tensor body's manifest length.
        const at = b.length >= 40 && rng.int(2) === 0 ? 36 : 4
        if (b.length >= at + 4) new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, rng.int(2) === 0 ? rng.int(2 ** 32) : rng.int(b.length + 16))
      }
    }
  }
  return b
}

/** Structure-aware damage: a top-level field of a valid header replaced or removed. */
export function mutateHeader (rng: Random, header: unknown): unknown {
  const h = structuredClone(header) as Record<string, unknown>
  const keys = Object.keys(h)
  const k = rng.int(3) === 0 ? `extra${rng.int(3)}` : keys[rng.int(keys.length)]!
  if (rng.int(4) === 0) delete h[k]
  else h[k] = weird(rng)
  return h
}

/** Every [container, key] inside a JSON-like value, depth first. */
function slots (value: unknown, out: Array<[Record<string | number, unknown>, string | number]> = []): Array<[Record<string | number, unknown>, string | number]> {
  if (Array.isArray(value)) value.forEach((v, i) => { out.push([value as unknown as Record<number, unknown>, i]); slots(v, out) })
  else if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value)) {
    for (const [k, v] of Object.entries(value)) { out.push([value as Record<string, unknown>, k]); slots(v, out) }
  }
  return out
}

/** A number near a boundary a schema might get wrong. */
function edgeNumber (rng: Random, n: number): number {
  return [n + 1, n - 1, -n, 0, -1, n * 2 ** 20, 2 ** 31, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER + 2, n + 0.5, Infinity, -Infinity, NaN][rng.int(13)]!
}

/**
 * Structure-aware damage at any depth: one to three nested fields replaced
 * (by a hostile value, a nearby number, a longer or shorter string or array),
 * removed, or joined by an unknown one.
 */
export function mutateDeep (rng: Random, value: unknown): unknown {
  const root = { v: structuredClone(value) }
  const rounds = 1 + rng.int(3)
  for (let r = 0; r < rounds; r++) {
    const all = slots(root.v)
    all.push([root as Record<string, unknown>, 'v'])
    const [obj, key] = all[rng.int(all.length)]!
    const cur = obj[key]
    switch (rng.int(6)) {
      case 0: obj[key] = weird(rng); break
      case 1: obj[key] = typeof cur === 'number' ? edgeNumber(rng, cur) : weird(rng); break
      case 2:
        if (typeof cur === 'string') obj[key] = rng.int(2) === 0 ? cur.slice(0, rng.int(cur.length + 1)) : cur + cur.slice(0, 1 + rng.int(8)).repeat(1 + rng.int(40))
        else if (Array.isArray(cur)) obj[key] = rng.int(2) === 0 ? cur.slice(0, rng.int(cur.length + 1)) : [...cur, ...cur.slice(0, 1 + rng.int(3))]
        else obj[key] = weird(rng)
        break
      case 3: if (Array.isArray(obj)) obj.splice(Number(key), 1); else delete obj[key]; break
      case 4: if (cur !== null && typeof cur === 'object' && !Array.isArray(cur)) (cur as Record<string, unknown>)[`extra${rng.int(3)}`] = weird(rng); else obj[key] = String(cur); break
      default: if (typeof cur === 'number') obj[key] = -cur; else if (typeof cur === 'string') obj[key] = cur.replace(/./u, ch => String.fromCharCode(ch.charCodeAt(0) ^ (1 << rng.int(7)))); else obj[key] = null
    }
  }
  return root.v
}

export function memory (): number {
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

export interface Tally { inputs: number, accepted: number, rejected: Map<string, number>, escaped: string[] }

export const newTally = (): Tally => ({ inputs: 0, accepted: 0, rejected: new Map(), escaped: [] })

/** Ours: a ForgemeshError with a message (and, when `names` is given, one of those names). */
export function isOurs (err: unknown, names?: ReadonlySet<string>): err is ForgemeshError {
  return err instanceof ForgemeshError && err.message.length > 0 && (names === undefined || names.has(err.name))
}

export function record (t: Tally, err: unknown, names?: ReadonlySet<string>): void {
  if (isOurs(err, names)) t.rejected.set(err.name, (t.rejected.get(err.name) ?? 0) + 1)
  else t.escaped.push(`${(err as Error)?.name ?? typeof err}: ${String((err as Error)?.message ?? err)}`)
}

/** Runs `decode` on every input; with `names`, only those error names count as ours. */
export function run<T> (decode: (input: T) => unknown, inputs: Iterable<T>, names?: ReadonlySet<string>): Tally {
  const t = newTally()
  for (const input of inputs) {
    t.inputs++
    try {
      decode(input)
      t.accepted++
    } catch (err) {
      record(t, err, names)
    }
  }
  return t
}

/** `run` for async decoders, one input at a time. */
export async function runAsync<T> (decode: (input: T) => Promise<unknown>, inputs: Iterable<T>, names?: ReadonlySet<string>): Promise<Tally> {
  const t = newTally()
  for (const input of inputs) {
    t.inputs++
    try {
      await decode(input)
      t.accepted++
    } catch (err) {
      record(t, err, names)
    }
  }
  return t
}

/** rejected + accepted account for every input, and nothing escaped. */
export function total (t: Tally): number {
  return t.accepted + [...t.rejected.values()].reduce((a, b) => a + b, 0)
}
