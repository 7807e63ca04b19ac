/**
 * The running agent: its life from start through reloads to exit, the host
 * interfaces, per-rule counters, the locks, the policy file watch and the
 * Prometheus endpoint.
 *
 * @module
 */

export { Agent } from "./agent.ts";
export { CarriedCounters, recordedCounts, type RuleCounter } from "./counters.ts";
export { removeLearner } from "./host_interfaces.ts";
export { lockHolder, lockNetns, lockPinPath, netnsLockPath, pinLockPath } from "./lock.ts";
export { listenMetrics, type MetricsServer } from "./metrics.ts";
export { watchFile } from "./watch.ts";
