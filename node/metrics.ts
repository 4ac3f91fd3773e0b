/**
 * forgemesh's Prometheus series, in a registry of the site's own (so several
 * sites in one process, as in the simulator, do not share counters). libp2p's
 * own metrics register into the same registry through
 * @libp2p/prometheus-metrics when the host is given it.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'

export interface SiteMetrics {
  registry: Registry
  roundsCommitted: Counter
  roundsAborted: Counter
  bytesSent: Counter<'peer'>
  bytesReceived: Counter<'peer'>
  updateLatency: Histogram
  trainingSamplesPerSecond: Gauge
  epsilonSpent: Gauge
  epsilonRemaining: Gauge
  peersConnected: Gauge
  render: () => Promise<{ contentType: string, body: string }>
}

export function createSiteMetrics (site: string): SiteMetrics {
  const registry = new Registry()
  registry.setDefaultLabels({ site })
  const m = {
    registry,
    roundsCommitted: new Counter({ name: 'forgemesh_rounds_committed_total', help: 'Rounds this site has committed to its round log', registers: [registry] }),
    roundsAborted: new Counter({ name: 'forgemesh_rounds_aborted_total', help: 'Rounds aborted (quorum missed, secure aggregation failed)', registers: [registry] }),
    bytesSent: new Counter({ name: 'forgemesh_bytes_sent_total', help: 'Frame bytes written to streams, per remote peer', labelNames: ['peer'] as const, registers: [registry] }),
    bytesReceived: new Counter({ name: 'forgemesh_bytes_received_total', help: 'Frame bytes read from streams, per remote peer', labelNames: ['peer'] as const, registers: [registry] }),
    updateLatency: new Histogram({ name: 'forgemesh_update_latency_seconds', help: 'Time from a round opening to this site\'s update being acknowledged', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [registry] }),
    trainingSamplesPerSecond: new Gauge({ name: 'forgemesh_training_samples_per_second', help: 'Local training throughput over the last round', registers: [registry] }),
    epsilonSpent: new Gauge({ name: 'forgemesh_privacy_epsilon_spent', help: 'Differential-privacy epsilon charged to this site\'s ledger', registers: [registry] }),
    epsilonRemaining: new Gauge({ name: 'forgemesh_privacy_epsilon_remaining', help: 'Epsilon left in this site\'s budget', registers: [registry] }),
    peersConnected: new Gauge({ name: 'forgemesh_peers_connected', help: 'Federation members currently connected', registers: [registry] })
  }
  return { ...m, render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }) }
}
