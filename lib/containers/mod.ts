/**
 * Containers mode: containerd's tasks grouped into workloads by network
 * namespace, their veth pairs found and filtered at both ends.
 *
 * @module
 */

export { type AttachLatency, ContainersMode } from "./mode.ts";
export { NetnsHandle } from "./netns.ts";
export { attachSide, detachSide, InstancePool } from "./side.ts";
export { type SlotSelection } from "./veths.ts";
