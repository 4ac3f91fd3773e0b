/**
 * One entry point for every model kind, and models to and from safetensors
 * (the format of expert artifacts and exports). The file's metadata carries
 * the spec and its hash, so a file built for another spec is refused.
 */
import { decodeSafetensors, encodeSafetensors, type DecodeOptions } from '../../protocols/safetensors/index.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import { ParamMismatchError } from '../errors.ts'
import { createDenseModel, createMlpModel } from './dense.ts'
import type { ClassifierModel } from './model.ts'
import { createMoeModel } from './moe.ts'
import { initParams } from './params.ts'
import { canonicalJson, parseModelSpec, specHash, type ModelSpec } from './spec.ts'

/** Builds a model from a spec (validated here), with the spec's seeded initial values unless `initial` is given. */
export function createModel (specInput: unknown, initial?: TensorMap): ClassifierModel {
  const spec: ModelSpec = parseModelSpec(specInput)
  const params = initial ?? initParams(spec)
  switch (spec.kind) {
    case 'moe': return createMoeModel(spec, params)
    case 'dense': return createDenseModel(spec, params)
    case 'mlp': return createMlpModel(spec, params)
    default: { const never: never = spec; throw new Error(`unreachable ${String(never)}`) }
  }
}

/** Metadata keys written into model files. */
export const SPEC_KEY = 'forgemesh.spec'
export const SPEC_HASH_KEY = 'forgemesh.specHash'

/** The model's parameters as safetensors bytes, with its spec and spec hash in the metadata. */
export function modelToSafetensors (model: ClassifierModel, metadata: Record<string, string> = {}): Uint8Array {
  return encodeSafetensors(model.getParams(), { ...metadata, [SPEC_KEY]: canonicalJson(model.spec), [SPEC_HASH_KEY]: specHash(model.spec) })
}

/**
 * A model from safetensors bytes plus its spec. Every parameter must be in the
 * file with the right shape; a file that names another spec hash is refused.
 */
export function modelFromSafetensors (bytes: Uint8Array, specInput: unknown, options: DecodeOptions = {}): ClassifierModel {
  const spec = parseModelSpec(specInput)
  const { tensors, metadata } = decodeSafetensors(bytes, options)
  const fileHash = metadata[SPEC_HASH_KEY]
  if (fileHash !== undefined && fileHash !== specHash(spec)) {
    throw new ParamMismatchError(`weights file was written for spec ${fileHash.slice(0, 12)}…, this spec hashes to ${specHash(spec).slice(0, 12)}…`)
  }
  return createModel(spec, tensors)
}
