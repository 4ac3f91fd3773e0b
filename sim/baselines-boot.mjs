// Entry of the simulator's baseline worker thread: register tsx's loader in
// this thread (sources are TypeScript), then run the worker.
import { register } from 'tsx/esm/api'

register()
await import('./baselines-worker.ts')
