/**
 * Small dense linear algebra for the router, in float64 row-major arrays.
 * Only what the density router needs: a symmetric eigensolver (cyclic Jacobi,
 * exact enough for the k × k matrices it sees, k ≈ 40) and the top-k
 * eigenvectors of a large symmetric matrix (subspace iteration + Rayleigh–Ritz,
 * so a 784 × 784 pixel covariance never goes through Jacobi).
 */
import type { Random } from '../components.ts'

export interface Eigen {
  /** Eigenvalues, descending. */
  values: Float64Array
  /** n × n row-major; column j is the eigenvector of values[j]. */
  vectors: Float64Array
}

/** Eigen-decomposition of a symmetric n × n matrix (the input is not modified). */
export function symmetricEigen (matrix: Float64Array, n: number): Eigen {
  const a = Float64Array.from(matrix)
  const v = new Float64Array(n * n)
  for (let i = 0; i < n; i++) v[i * n + i] = 1
  let scale = 0
  for (let i = 0; i < n * n; i++) scale += a[i]! * a[i]!
  const tol = 1e-22 * Math.max(scale, 1e-300)
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! * a[p * n + q]!
    if (off <= tol) break
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!
        if (apq === 0) continue
        // Rotation angle that zeroes a[p][q] (Golub & Van Loan 8.5.2).
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq)
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1))
        const c = 1 / Math.sqrt(t * t + 1)
        const s = t * c
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!
          const akq = a[k * n + q]!
          a[k * n + p] = c * akp - s * akq
          a[k * n + q] = s * akp + c * akq
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!
          const aqk = a[q * n + k]!
          a[p * n + k] = c * apk - s * aqk
          a[q * n + k] = s * apk + c * aqk
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!
          const vkq = v[k * n + q]!
          v[k * n + p] = c * vkp - s * vkq
          v[k * n + q] = s * vkp + c * vkq
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[j * n + j]! - a[i * n + i]!)
  const values = new Float64Array(n)
  const vectors = new Float64Array(n * n)
  order.forEach((src, dst) => {
    values[dst] = a[src * n + src]!
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src]!
  })
  return { values, vectors }
}

/** Orthonormalise the columns of an n × m matrix in place (modified Gram–Schmidt, twice for stability). */
function orthonormalizeColumns (x: Float64Array, n: number, m: number): void {
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < m; j++) {
      for (let i = 0; i < j; i++) {
        let dot = 0
        for (let r = 0; r < n; r++) dot += x[r * m + i]! * x[r * m + j]!
        for (let r = 0; r < n; r++) x[r * m + j] = x[r * m + j]! - dot * x[r * m + i]!
      }
      let norm = 0
      for (let r = 0; r < n; r++) norm += x[r * m + j]! ** 2
      norm = Math.sqrt(norm) || 1
      for (let r = 0; r < n; r++) x[r * m + j] = x[r * m + j]! / norm
    }
  }
}

/** y = A x for a symmetric n × n A and an n × m block x. */
function multiplyBlock (a: Float64Array, x: Float64Array, n: number, m: number): Float64Array {
  const y = new Float64Array(n * m)
  for (let i = 0; i < n; i++) {
    const yi = i * m
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k]!
      if (aik === 0) continue
      const xk = k * m
      for (let j = 0; j < m; j++) y[yi + j] = y[yi + j]! + aik * x[xk + j]!
    }
  }
  return y
}

/**
 * The k leading eigenpairs of a symmetric n × n matrix: subspace iteration on
 * k + 8 columns (the extra columns speed convergence of the k-th), then a
 * Rayleigh–Ritz step. `vectors` is n × k row-major.
 */
export function topEigen (matrix: Float64Array, n: number, k: number, random: Random, iterations = 60): Eigen {
  const m = Math.min(n, k + 8)
  let x: Float64Array = new Float64Array(n * m)
  for (let i = 0; i < x.length; i++) x[i] = random.normal()
  orthonormalizeColumns(x, n, m)
  for (let it = 0; it < iterations; it++) {
    x = multiplyBlock(matrix, x, n, m)
    orthonormalizeColumns(x, n, m)
  }
  const ax = multiplyBlock(matrix, x, n, m)
  const small = new Float64Array(m * m)
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0
      for (let r = 0; r < n; r++) s += x[r * m + i]! * ax[r * m + j]!
      small[i * m + j] = s
    }
  }
  for (let i = 0; i < m; i++) for (let j = i + 1; j < m; j++) small[i * m + j] = small[j * m + i] = (small[i * m + j]! + small[j * m + i]!) / 2
  const e = symmetricEigen(small, m)
  const values = e.values.slice(0, k)
  const vectors = new Float64Array(n * k)
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < k; j++) {
      let s = 0
      for (let i = 0; i < m; i++) s += x[r * m + i]! * e.vectors[i * m + j]!
      vectors[r * k + j] = s
    }
  }
  return { values, vectors }
}
