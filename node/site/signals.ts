/** Small in-process plumbing for the site runtime: a typed emitter and a wakeable wait. */

export interface Emitter<E> {
  on: <K extends keyof E>(event: K, listener: (e: E[K]) => void) => () => void
  emit: <K extends keyof E>(event: K, e: E[K]) => void
}

export function createEmitter<E> (onError: (event: keyof E, err: unknown) => void): Emitter<E> {
  const listeners = new Map<keyof E, Set<(e: never) => void>>()
  return {
    on: (event, listener) => {
      let set = listeners.get(event)
      if (set === undefined) listeners.set(event, set = new Set())
      set.add(listener as (e: never) => void)
      return () => { set.delete(listener as (e: never) => void) }
    },
    emit: (event, e) => {
      for (const l of listeners.get(event) ?? []) {
        try { (l as (e: unknown) => void)(e) } catch (err) { onError(event, err) }
      }
    }
  }
}

/**
 * The site loop sleeps here between looks at the world. A wake that comes
 * while the loop is busy is kept, so the next wait returns at once: no
 * event is lost between a check and the sleep that follows it.
 */
export interface Waker {
  wake: () => void
  wait: (ms: number, signal: AbortSignal) => Promise<void>
}

export function createWaker (): Waker {
  let pending = false
  let resolveWait: (() => void) | undefined
  return {
    wake: () => {
      if (resolveWait !== undefined) resolveWait()
      else pending = true
    },
    wait: async (ms, signal) => {
      if (pending || signal.aborted) {
        pending = false
        return
      }
      await new Promise<void>(resolve => {
        const done = (): void => {
          clearTimeout(timer)
          signal.removeEventListener('abort', done)
          resolveWait = undefined
          resolve()
        }
        const timer = setTimeout(done, ms)
        signal.addEventListener('abort', done, { once: true })
        resolveWait = done
      })
    }
  }
}
