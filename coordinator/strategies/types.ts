/**
 * The contract every aggregation strategy meets. Strategies work on flat
 * float32 pseudo-gradients (protocols/tensors.ts flattens a TensorMap), with
 * the convention delta = start - local, so a plain average with server
 * learning rate 1 gives next = global - mean(delta).
 */

/** JSON value: strategy state is committed with the round, so it must survive JSON. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

export interface SiteUpdate {
  site: string
  /** Pseudo-gradient: start - local, same length as the global vector. */
  delta: Float32Array
  /** Number of local examples behind the update (sample-weighted strategies use it). */
  samples: number
}

export interface AggregateResult {
  next: Float32Array
  state: JsonValue
}

export interface Strategy {
  readonly name: string
  /**
   * Folds one round's updates into the global vector. `state` is what the
   * previous round returned (null before the first round). Inputs are not
   * mutated; the result does not depend on the order of `updates`.
   */
  aggregate: (updates: readonly SiteUpdate[], global: Float32Array, state: JsonValue) => AggregateResult
}
