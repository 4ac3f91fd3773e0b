import { ForgemeshError } from '../protocols/errors.ts'

/** Named errors of the pure coordination layer. */

export class InvalidArgumentError extends ForgemeshError {
  override name = 'InvalidArgumentError'
  override readonly code = 'ERR_INVALID_ARGUMENT'
}

/** A seeded partitioner could not meet its constraints (e.g. a minimum site size). */
export class PartitionInfeasibleError extends ForgemeshError {
  override name = 'PartitionInfeasibleError'
  override readonly code = 'ERR_PARTITION_INFEASIBLE'
}

export class SyntheticDomainError extends ForgemeshError {
  override name = 'SyntheticDomainError'
  override readonly code = 'ERR_SYNTHETIC_DOMAIN'
}

/** A round closed with fewer accepted updates than its quorum: nothing is committed, the round is reopened. */
export class QuorumNotReachedError extends ForgemeshError {
  override name = 'QuorumNotReachedError'
  override readonly code = 'ERR_QUORUM_NOT_REACHED'
}

/** A round-machine method was called in a phase that does not allow it (e.g. aggregate while collecting). */
export class RoundPhaseError extends ForgemeshError {
  override name = 'RoundPhaseError'
  override readonly code = 'ERR_ROUND_PHASE'
}

/** A strategy or compression config (or a strategy state read back) failed validation. */
export class StrategyConfigError extends ForgemeshError {
  override name = 'StrategyConfigError'
  override readonly code = 'ERR_STRATEGY_CONFIG'
}

/** Updates handed to a strategy are unusable: none, wrong length, non-finite, or too few for a robust rule. */
export class InvalidUpdatesError extends ForgemeshError {
  override name = 'InvalidUpdatesError'
  override readonly code = 'ERR_INVALID_UPDATES'
}

/** A compressed payload does not decode: bad tag, sizes that disagree, or indices out of range. */
export class CompressionFormatError extends ForgemeshError {
  override name = 'CompressionFormatError'
  override readonly code = 'ERR_COMPRESSION_FORMAT'
}

/** A secure-aggregation round cannot go on (too few members left at a stage): it ends, and nothing unmasked is released. */
export class SecAggAbortedError extends ForgemeshError {
  override name = 'SecAggAbortedError'
  override readonly code = 'ERR_SECAGG_ABORTED'
}

/** A secure-aggregation message is malformed, out of order, from the wrong round, or carries a bad signature. */
export class SecAggProtocolError extends ForgemeshError {
  override name = 'SecAggProtocolError'
  override readonly code = 'ERR_SECAGG_PROTOCOL'
}

/** A Shamir share (or an encrypted share box) was altered: it does not fit the others or its commitment. */
export class ShareTamperedError extends ForgemeshError {
  override name = 'ShareTamperedError'
  override readonly code = 'ERR_SHARE_TAMPERED'
}

/** Privacy settings that cannot hold together (e.g. a robust median under secure aggregation). */
export class PrivacyConfigError extends ForgemeshError {
  override name = 'PrivacyConfigError'
  override readonly code = 'ERR_PRIVACY_CONFIG'
}

/** Bad input to the routing math (coordinator/routing): shapes, budgets, released statistics. */
export class RoutingInputError extends ForgemeshError {
  override name = 'RoutingInputError'
  override readonly code = 'ERR_ROUTING_INPUT'
}
