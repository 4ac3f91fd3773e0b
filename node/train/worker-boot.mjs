// Entry of a trainer worker thread. Sources are TypeScript: register tsx's
// loader in this thread (as bin/forgemesh.js does for the main one), then run it.
import { register } from 'tsx/esm/api'

register()
await import('./worker-thread.ts')
