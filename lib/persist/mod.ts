/**
 * What outlives an agent: the pins under --pin-path, the state recorded
 * beside them, and what a starting agent finds of an earlier one.
 *
 * @module
 */

export { type LeftLink, Leftovers } from "./leftovers.ts";
export { PinSet, unpin } from "./pinset.ts";
export {
  type AgentState,
  type AttachmentRecord,
  type CarriedRecord,
  type InterfaceRecord,
  layoutId,
  type LearnerRecord,
  type PolicyRecord,
  type SideRecord,
  STATE_FORMAT,
  StateError,
  StateFiles,
  type StateHeader,
  type VethRecord,
} from "./state.ts";
