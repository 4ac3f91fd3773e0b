/**
 * Runtime shims. Every entry point (the CLI, the simulator, benchmarks and
 * vitest's setupFiles) imports this module first.
 *
 * libp2p 3 calls Promise.withResolvers, which Node only has from 22. Without
 * it every dial dies with a misleading ECONNRESET (see ../shared/STACK.md).
 */

type Resolvers<T> = {
  promise: Promise<T>
  resolve: (value: T | PromiseLike<T>) => void
  reject: (reason?: unknown) => void
}

const promiseCtor = Promise as unknown as { withResolvers?: <T>() => Resolvers<T> }

if (typeof promiseCtor.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>(): Resolvers<T> {
      let resolve!: Resolvers<T>['resolve']
      let reject!: Resolvers<T>['reject']
      const promise = new Promise<T>((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}

export const runtimeReady = true
