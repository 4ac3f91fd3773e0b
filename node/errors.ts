import { ForgemeshError } from '../protocols/errors.ts'

/** Named errors of a site: config, store, data, training, mesh effects. */

export class ConfigError extends ForgemeshError {
  override name = 'ConfigError'
  override readonly code = 'ERR_CONFIG'
}

export class CorruptRecordError extends ForgemeshError {
  override name = 'CorruptRecordError'
  override readonly code = 'ERR_CORRUPT_RECORD'
}

export class StoreClosedError extends ForgemeshError {
  override name = 'StoreClosedError'
  override readonly code = 'ERR_STORE_CLOSED'
}

/** Bad input in a site's data (area "data"); the message starts with `file:line:` where there is a line. */
export class DataInputError extends ForgemeshError {
  override name = 'DataInputError'
  override readonly code: string = 'ERR_DATA_INPUT'
  constructor (message: string, readonly file: string, readonly line?: number, options?: { cause?: unknown }) {
    super(line === undefined ? `${file}: ${message}` : `${file}:${line}: ${message}`, options)
  }
}

export class MnistFormatError extends DataInputError {
  override name = 'MnistFormatError'
  override readonly code = 'ERR_MNIST_FORMAT'
}

export class DataFileNotFoundError extends DataInputError {
  override name = 'DataFileNotFoundError'
  override readonly code = 'ERR_DATA_FILE_NOT_FOUND'
}

export class EmptyDataFileError extends DataInputError {
  override name = 'EmptyDataFileError'
  override readonly code = 'ERR_EMPTY_DATA_FILE'
}

export class CsvSyntaxError extends DataInputError {
  override name = 'CsvSyntaxError'
  override readonly code = 'ERR_CSV_SYNTAX'
}

export class ColumnCountError extends DataInputError {
  override name = 'ColumnCountError'
  override readonly code = 'ERR_COLUMN_COUNT'
}

export class BadValueError extends DataInputError {
  override name = 'BadValueError'
  override readonly code = 'ERR_BAD_VALUE'
}

export class UnknownLabelError extends DataInputError {
  override name = 'UnknownLabelError'
  override readonly code = 'ERR_UNKNOWN_LABEL'
}

export class DatasetSchemaError extends ForgemeshError {
  override name = 'DatasetSchemaError'
  override readonly code = 'ERR_DATASET_SCHEMA'
}

export class AuditChainBrokenError extends ForgemeshError {
  override name = 'AuditChainBrokenError'
  override readonly code = 'ERR_AUDIT_CHAIN'
  readonly seq: number
  readonly problem: 'malformed' | 'unreadable'
  constructor (message: string, detail: { seq: number, problem: 'malformed' | 'unreadable' }) {
    super(message)
    this.seq = detail.seq
    this.problem = detail.problem
  }
}

export class ApiConfigError extends ForgemeshError {
  override name = 'ApiConfigError'
  override readonly code = 'ERR_API_CONFIG'
}

export class HttpError extends ForgemeshError {
  override name = 'HttpError'
  override readonly code = 'ERR_HTTP'
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}

/** A privacy release would take the site past its (eps, delta) budget: it is refused, nothing is recorded and nothing is sent. */
export class PrivacyBudgetExceededError extends ForgemeshError {
  override name = 'PrivacyBudgetExceededError'
  override readonly code = 'ERR_PRIVACY_BUDGET_EXCEEDED'
}

// --- mesh (area "mesh") ---

/** No PSK and no explicit insecureOpenMesh: the host refuses to start. */
export class InsecureMeshError extends ForgemeshError {
  override name = 'InsecureMeshError'
  override readonly code = 'ERR_INSECURE_MESH'
}

export class PskFileError extends ForgemeshError {
  override name = 'PskFileError'
  override readonly code = 'ERR_PSK_FILE'
}

export class IdentityFileError extends ForgemeshError {
  override name = 'IdentityFileError'
  override readonly code = 'ERR_IDENTITY_FILE'
}

export class MeshNotStartedError extends ForgemeshError {
  override name = 'MeshNotStartedError'
  override readonly code = 'ERR_MESH_NOT_STARTED'
}

export class PeerNotAllowedError extends ForgemeshError {
  override name = 'PeerNotAllowedError'
  override readonly code = 'ERR_PEER_NOT_ALLOWED'
}

export class MeshRequestTimeoutError extends ForgemeshError {
  override name = 'MeshRequestTimeoutError'
  override readonly code = 'ERR_MESH_TIMEOUT'
}

/** The peer answered with an error frame; `remoteCode` is its code. */
export class RemoteError extends ForgemeshError {
  override name = 'RemoteError'
  override readonly code = 'ERR_REMOTE'
  constructor (readonly remoteCode: string, message: string) {
    super(message)
  }
}

/** The stream ended or was reset before the answer was complete. */
export class MeshStreamError extends ForgemeshError {
  override name = 'MeshStreamError'
  override readonly code = 'ERR_MESH_STREAM'
}

export class BlobNotFoundError extends ForgemeshError {
  override name = 'BlobNotFoundError'
  override readonly code = 'ERR_BLOB_NOT_FOUND'
}

export class BlobHashMismatchError extends ForgemeshError {
  override name = 'BlobHashMismatchError'
  override readonly code = 'ERR_BLOB_HASH_MISMATCH'
}

export class TransferFailedError extends ForgemeshError {
  override name = 'TransferFailedError'
  override readonly code = 'ERR_TRANSFER_FAILED'
}

// --- model and trainer (area "model/train") ---

/** A model spec that fails validation (names the field and the rule). */
export class ModelSpecError extends ForgemeshError {
  override name = 'ModelSpecError'
  override readonly code = 'ERR_MODEL_SPEC'
}

/** Parameters that do not fit a model: unknown or missing names, wrong shapes, a spec hash that differs. */
export class ParamMismatchError extends ForgemeshError {
  override name = 'ParamMismatchError'
  override readonly code = 'ERR_PARAM_MISMATCH'
}

/** Inputs, labels or gates whose size or values do not fit the model. */
export class ModelInputError extends ForgemeshError {
  override name = 'ModelInputError'
  override readonly code = 'ERR_MODEL_INPUT'
}

/** A trainer that cannot run: bad options, a worker thread that failed or was stopped. */
export class TrainerError extends ForgemeshError {
  override name = 'TrainerError'
  override readonly code = 'ERR_TRAINER'
}

/** A committed round's bytes (aggregate or strategy state) do not hash to what its record says. */
export class RoundHashMismatchError extends ForgemeshError {
  override name = 'RoundHashMismatchError'
  override readonly code = 'ERR_ROUND_HASH_MISMATCH'
}

/** A round does not follow the log: wrong round id or a prevHash that does not link to the last record. */
export class RoundLogGapError extends ForgemeshError {
  override name = 'RoundLogGapError'
  override readonly code = 'ERR_ROUND_LOG_GAP'
}

/** A different record was offered for a round that is already committed. */
export class RoundConflictError extends ForgemeshError {
  override name = 'RoundConflictError'
  override readonly code = 'ERR_ROUND_CONFLICT'
}

export class JsonlSyntaxError extends DataInputError {
  override name = 'JsonlSyntaxError'
  override readonly code = 'ERR_JSONL_SYNTAX'
}

export class HeaderError extends DataInputError {
  override name = 'HeaderError'
  override readonly code = 'ERR_HEADER'
}

export class DataFileTooLargeError extends DataInputError {
  override name = 'DataFileTooLargeError'
  override readonly code = 'ERR_DATA_FILE_TOO_LARGE'
}

// --- synthetic data (area "synthetic") ---

/** A dataset schema the DP synthetic-data generator cannot work from (e.g. a numeric column without bounds). */
export class SyntheticSchemaError extends ForgemeshError {
  override name = 'SyntheticSchemaError'
  override readonly code = 'ERR_SYNTHETIC_SCHEMA'
}

// --- operations (area "operations") ---

/** The site store is held by another process (a running node): LevelDB allows one at a time. */
export class StoreInUseError extends ForgemeshError {
  override name = 'StoreInUseError'
  override readonly code = 'ERR_STORE_IN_USE'
}

/** `forgemesh status` could not reach a running node's local API. */
export class NodeNotRunningError extends ForgemeshError {
  override name = 'NodeNotRunningError'
  override readonly code = 'ERR_NODE_NOT_RUNNING'
}

// --- experts: artifacts, registry, exchange, assembly, export (area "experts") ---

/** Bytes that are not an expert artifact: too large, not safetensors, no or malformed manifest. */
export class ArtifactFormatError extends ForgemeshError {
  override name = 'ArtifactFormatError'
  override readonly code = 'ERR_ARTIFACT_FORMAT'
}

/** The artifact's bytes or tensors do not hash to what was asked for or what its signed manifest says. */
export class ArtifactHashMismatchError extends ForgemeshError {
  override name = 'ArtifactHashMismatchError'
  override readonly code = 'ERR_ARTIFACT_HASH_MISMATCH'
}

/** The signature over an artifact manifest or a revocation does not verify with the member's key. */
export class ArtifactSignatureError extends ForgemeshError {
  override name = 'ArtifactSignatureError'
  override readonly code = 'ERR_ARTIFACT_SIGNATURE'
}

/** An artifact or revocation signed by (claiming to come from) a site that is not a member. */
export class NotAMemberError extends ForgemeshError {
  override name = 'NotAMemberError'
  override readonly code = 'ERR_NOT_A_MEMBER'
}

/** An artifact built for another model spec, or whose tensors do not fit this spec. */
export class SpecMismatchError extends ForgemeshError {
  override name = 'SpecMismatchError'
  override readonly code = 'ERR_SPEC_MISMATCH'
}

/** Assembly cannot proceed: two artifacts for one slot, an unknown expert id, a router that returns bad gates. */
export class AssemblyError extends ForgemeshError {
  override name = 'AssemblyError'
  override readonly code = 'ERR_ASSEMBLY'
}

/** An export folder whose manifest.json or model.safetensors is missing, malformed or does not match its hash. */
export class ExportFormatError extends ForgemeshError {
  override name = 'ExportFormatError'
  override readonly code = 'ERR_EXPORT_FORMAT'
}

// --- site runtime (area "site runtime") ---

/** A site runtime used out of order: run() before start(), two runs at once, or after stop(). */
export class SiteStateError extends ForgemeshError {
  override name = 'SiteStateError'
  override readonly code = 'ERR_SITE_STATE'
}

/** Missed rounds could not be fetched from any peer (none has them, or they do not fit a frame). */
export class CatchUpError extends ForgemeshError {
  override name = 'CatchUpError'
  override readonly code = 'ERR_CATCH_UP'
}

// --- flagship MoE federation (area "flagship MoE") ---

/** Bad input to the federated MoE recipe: a site's expert index, a parameter map for the wrong expert, an impossible run config. */
export class FederationError extends ForgemeshError {
  override name = 'FederationError'
  override readonly code = 'ERR_FEDERATION'
}

// --- pnet cipher memory (area "sim scale") ---

/** The process holds as many pnet ciphers as its reserved cipher memory fits; a further connection is refused. */
export class PnetCapacityError extends ForgemeshError {
  override name = 'PnetCapacityError'
  override readonly code = 'ERR_PNET_CAPACITY'
}

/** @libp2p/pnet's protected connection no longer has the shape the cipher bound relies on (a dependency upgrade). */
export class PnetCipherError extends ForgemeshError {
  override name = 'PnetCipherError'
  override readonly code = 'ERR_PNET_CIPHER'
}

// --- receive-buffer pool (area "mesh") ---

/** A receive buffer was handed back to its pool a second time (its update was released twice). */
export class BodyReleasedError extends ForgemeshError {
  override name = 'BodyReleasedError'
  override readonly code = 'ERR_BODY_RELEASED'
}

/** A receive-buffer pool was misconfigured, or handed a buffer it never lent. */
export class BodyPoolError extends ForgemeshError {
  override name = 'BodyPoolError'
  override readonly code = 'ERR_BODY_POOL'
}

/** The sha256 worker thread of a sender failed, stalled, or was used after its job ended. */
export class HashWorkerError extends ForgemeshError {
  override name = 'HashWorkerError'
  override readonly code = 'ERR_HASH_WORKER'
}
