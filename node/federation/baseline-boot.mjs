// Entry of a baseline worker thread. Sources are TypeScript: register tsx's
// loader in this thread (as node/train/worker-boot.mjs does), then run it.
import { register } from 'tsx/esm/api'

register()
await import('./baseline-thread.ts')
