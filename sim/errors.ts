import { ForgemeshError } from '../protocols/errors.ts'

/** Named errors of the simulator. */

export class TopologyError extends ForgemeshError {
  override name = 'TopologyError'
  override readonly code = 'ERR_TOPOLOGY'
}

/** A shaped link lost data; like TCP with a hole in its stream, the connection is reset. */
export class LinkLossError extends ForgemeshError {
  override name = 'LinkLossError'
  override readonly code = 'ERR_LINK_LOSS'
}

/** The simulated network is partitioned between these two sites. */
export class LinkPartitionedError extends ForgemeshError {
  override name = 'LinkPartitionedError'
  override readonly code = 'ERR_LINK_PARTITIONED'
}

/** A report.json that does not match the documented schema. */
export class ReportError extends ForgemeshError {
  override name = 'ReportError'
  override readonly code = 'ERR_REPORT'
}
