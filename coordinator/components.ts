/**
 * The seams every component receives (ARCHITECTURE.md, "Seams the simulator
 * needs"). Nothing in forgemesh reads the wall clock, Math.random or a global
 * logger on its own: it is handed these, so a simulator can run many sites in
 * one process on a seeded clock and a failing run can be replayed.
 *
 * This file is pure. Implementations with effects (the system clock, a logger
 * that writes to stderr) live in node/components.ts.
 */
import { InvalidArgumentError } from './errors.ts'

export interface Clock {
  /** Milliseconds since the Unix epoch (or since the start of a simulation). */
  now: () => number
}

export interface Random {
  /** Uniform in [0, 1). */
  next: () => number
  /** Uniform integer in [0, n). */
  int: (n: number) => number
  /** Standard normal, N(0, 1). */
  normal: () => number
  /** A new independent stream, derived deterministically from this one. */
  fork: (label: string) => Random
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

export interface Logger {
  readonly namespace: string
  debug: (event: string, fields?: Record<string, unknown>) => void
  info: (event: string, fields?: Record<string, unknown>) => void
  warn: (event: string, fields?: Record<string, unknown>) => void
  error: (event: string, fields?: Record<string, unknown>) => void
  /** A logger for a sub-namespace: `forgemesh:mesh` -> `forgemesh:mesh:update`. */
  child: (suffix: string) => Logger
}

/** A clock that only moves when told to: for tests and the simulator. */
export interface ManualClock extends Clock {
  advance: (ms: number) => void
  set: (ms: number) => void
}

export function createManualClock (startMs = 0): ManualClock {
  let t = startMs
  return {
    now: () => t,
    advance: (ms) => {
      if (!(ms >= 0)) throw new InvalidArgumentError(`clock can only move forward, got advance(${ms})`)
      t += ms
    },
    set: (ms) => {
      if (ms < t) throw new InvalidArgumentError(`clock can only move forward: ${ms} < ${t}`)
      t = ms
    }
  }
}

/** 32-bit FNV-1a of a string, to turn labels into seeds. */
export function hashString32 (s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}

/**
 * A seeded random source: sfc32 (Chris Doty-Humphrey's Small Fast Counter),
 * state expanded from the seed with splitmix32. It passes PractRand to
 * terabytes, is fast in JS (32-bit integer ops only) and is fully determined
 * by the seed, which is all a simulator replay needs.
 */
export function createSeededRandom (seed: number | string): Random {
  let s = typeof seed === 'string' ? hashString32(seed) : (seed >>> 0) ^ Math.floor(seed / 2 ** 32)
  const splitmix = (): number => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
  let a = splitmix()
  let b = splitmix()
  let c = splitmix()
  let d = splitmix()
  const origin = [a, b, c, d].join(':')

  const nextU32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0
    d = (d + 1) >>> 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) >>> 0
    c = ((c << 21) | (c >>> 11)) >>> 0
    c = (c + t) >>> 0
    return t
  }
  for (let i = 0; i < 12; i++) nextU32()

  let spareNormal: number | undefined
  const rng: Random = {
    next: () => nextU32() / 4294967296,
    int: (n) => {
      if (!Number.isInteger(n) || n <= 0 || n > 2 ** 32) throw new InvalidArgumentError(`int(n) needs an integer 1..2^32, got ${n}`)
      // Rejection sampling keeps the result exactly uniform.
      const limit = 4294967296 - (4294967296 % n)
      let x = nextU32()
      while (x >= limit) x = nextU32()
      return x % n
    },
    normal: () => {
      if (spareNormal !== undefined) {
        const v = spareNormal
        spareNormal = undefined
        return v
      }
      // Box-Muller; u1 in (0, 1] so the log is finite.
      const u1 = 1 - nextU32() / 4294967296
      const u2 = nextU32() / 4294967296
      const r = Math.sqrt(-2 * Math.log(u1))
      spareNormal = r * Math.sin(2 * Math.PI * u2)
      return r * Math.cos(2 * Math.PI * u2)
    },
    fork: (label) => createSeededRandom(hashString32(`${origin}/${label}`))
  }
  return rng
}

/** A logger that drops everything, for components whose caller wants quiet. */
export function createSilentLogger (namespace = 'forgemesh'): Logger {
  const noop = (): void => {}
  return {
    namespace,
    debug: noop,
    info: noop,
    warn: noop,
    error: noop,
    child: (suffix) => createSilentLogger(`${namespace}:${suffix}`)
  }
}
