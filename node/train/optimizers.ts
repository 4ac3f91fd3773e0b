/**
 * Local optimizers over tf.Variables: SGD, SGD with (heavy-ball) momentum,
 * Adam. Their state lives as long as the optimizer, across any number of
 * trainer.steps() calls, because a site runs H steps per round for many rounds.
 * A parameter that got no gradient in a step (an expert no row was routed to)
 * is skipped, state included, as PyTorch does for a parameter whose grad is None.
 */
import * as tf from '@tensorflow/tfjs'
import { z } from 'zod'
import { TrainerError } from '../errors.ts'

const lr = z.number().positive().max(100)

export const OptimizerConfig = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('sgd'), lr }).strict(),
  // PyTorch's form: buf = momentum * buf + g; p -= lr * buf.
  z.object({ kind: z.literal('momentum'), lr, momentum: z.number().min(0).lt(1).default(0.9) }).strict(),
  z.object({
    kind: z.literal('adam'),
    lr,
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
    eps: z.number().positive().default(1e-8)
  }).strict()
])
export type OptimizerConfig = z.infer<typeof OptimizerConfig>
export type OptimizerConfigInput = z.input<typeof OptimizerConfig>

export interface Optimizer {
  readonly config: OptimizerConfig
  /** One update; grads are owned by the caller. */
  apply: (updates: ReadonlyArray<{ name: string, variable: tf.Variable, grad: tf.Tensor }>) => void
  /** Drops all state (moments, step counts). */
  reset: () => void
  dispose: () => void
}

export function parseOptimizerConfig (input: unknown): OptimizerConfig {
  const r = OptimizerConfig.safeParse(input)
  if (r.success) return r.data
  throw new TrainerError(`invalid optimizer: ${r.error.issues.map(i => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ')}`)
}

export function createOptimizer (input: unknown): Optimizer {
  const config = parseOptimizerConfig(input)
  const slots = new Map<string, { m: tf.Variable, v?: tf.Variable, t: number }>()
  const slot = (name: string, like: tf.Variable, second: boolean): { m: tf.Variable, v?: tf.Variable, t: number } => {
    let s = slots.get(name)
    if (s === undefined) {
      s = { m: tf.tidy(() => tf.variable(tf.zerosLike(like), false)), t: 0 }
      if (second) s.v = tf.tidy(() => tf.variable(tf.zerosLike(like), false))
      slots.set(name, s)
    }
    return s
  }
  const reset = (): void => {
    for (const s of slots.values()) { s.m.dispose(); s.v?.dispose() }
    slots.clear()
  }

  const apply: Optimizer['apply'] = (updates) => {
    tf.tidy(() => {
      for (const { name, variable, grad } of updates) {
        switch (config.kind) {
          case 'sgd':
            variable.assign(variable.sub(grad.mul(config.lr)))
            break
          case 'momentum': {
            const s = slot(name, variable, false)
            s.m.assign(s.m.mul(config.momentum).add(grad))
            variable.assign(variable.sub(s.m.mul(config.lr)))
            break
          }
          case 'adam': {
            const [b1, b2] = config.betas
            const s = slot(name, variable, true)
            s.t++
            s.m.assign(s.m.mul(b1).add(grad.mul(1 - b1)))
            s.v!.assign(s.v!.mul(b2).add(grad.square().mul(1 - b2)))
            // Bias correction folded into the step size (Kingma & Ba, section 2).
            const stepSize = config.lr * Math.sqrt(1 - b2 ** s.t) / (1 - b1 ** s.t)
            const epsHat = config.eps * Math.sqrt(1 - b2 ** s.t)
            variable.assign(variable.sub(s.m.div(s.v!.sqrt().add(epsHat)).mul(stepSize)))
            break
          }
          default: { const never: never = config; throw new TrainerError(`unknown optimizer ${String(never)}`) }
        }
      }
    })
  }
  return { config, apply, reset, dispose: reset }
}
