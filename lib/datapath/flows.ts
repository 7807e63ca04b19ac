/**
 * The `flows` LRU map from user space: its keys as {@link FlowTuple}s (the
 * reference model's type), for `status`-like listings and tests, and a way to
 * empty it. The XDP and tc programs fill it (docs/DATAPATH.md §7).
 *
 * @module
 */

import type { FlowTuple } from "../model/mod.ts";
import { decode, FlowKey, FlowValue } from "../abi/mod.ts";
import type { BpfMap } from "./object.ts";

/** Decodes a `tfw_flow_key`. */
export function decodeFlowKey(bytes: Uint8Array): FlowTuple {
  const v = decode(FlowKey, bytes);
  const family = Number(v.family) === 6 ? 6 : 4;
  const size = family === 4 ? 4 : 16;
  return {
    family,
    proto: Number(v.proto),
    saddr: (v.saddr as Uint8Array).slice(0, size),
    daddr: (v.daddr as Uint8Array).slice(0, size),
    sport: Number(v.sport),
    dport: Number(v.dport),
  };
}

/** One entry of the flow table. */
export interface FlowEntry {
  /** The reply the flow lets through. */
  reply: FlowTuple;
  /** When it was last learned or answered (CLOCK_MONOTONIC_COARSE, ns). */
  seenNs: bigint;
}

/** Every entry of the `flows` map (a snapshot; the programs keep changing it). */
export function listFlows(flows: BpfMap): FlowEntry[] {
  const out: FlowEntry[] = [];
  for (const key of flows.keys()) {
    const value = flows.lookup(key);
    if (!value) continue; // evicted meanwhile
    out.push({ reply: decodeFlowKey(key), seenNs: decode(FlowValue, value).seen as bigint });
  }
  return out;
}

/** Deletes every entry of the `flows` map; returns how many were deleted. */
export function clearFlows(flows: BpfMap): number {
  const keys = [...flows.keys()];
  if (!keys.length) return 0;
  const all = new Uint8Array(keys.length * flows.keySize);
  keys.forEach((k, i) => all.set(k, i * flows.keySize));
  return flows.deleteBatch(all, keys.length);
}
