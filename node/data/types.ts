/**
 * What node/data hands out: labelled examples as dense float32 features, and
 * batches of them for the trainer. Nothing else leaves node/data; protocol
 * handlers (node/mesh/) may not import this folder at all (test/architecture).
 */
export interface LabeledData {
  /** n × dim features, row-major. */
  x: Float32Array
  /** n labels in [0, numClasses). */
  y: Int32Array
  n: number
  dim: number
  numClasses: number
}

export interface Batch {
  x: Float32Array
  y: Int32Array
  size: number
}

export interface BatchSource {
  readonly dim: number
  readonly numClasses: number
  /** Number of examples behind this source (FedAvg weights by it). */
  readonly size: number
  /** The next batch; sources cycle through their data in a seeded shuffled order. */
  next: (batchSize: number) => Batch
}
