/**
 * The reference model of the data plane, for tests and `tinyfw explain`:
 * the evaluator (DATAPATH.md §2 read literally), a walk of compiled tables,
 * the flow table, and the frame parser and builder.
 *
 * @module
 */

export { type FlowTuple } from "./flows.ts";
export { buildFrame, type FrameSpec } from "./frame.ts";
