/**
 * The loaded XDP data path: the object and its maps, program instances
 * and their attachments (netlink, links, tc), policies placed in slots,
 * drop samples and flows.
 *
 * @module
 */

export { attachProgram, type AttachProgramOptions, attemptedMode, xdpOccupant } from "./attach.ts";
export { AttachIds } from "./attach_ids.ts";
export { BpffsNotMountedError, ensurePinDir, removePinDir } from "./bpffs.ts";
export { type DropEvent, EventReader, formatDropEvent, samplesLost } from "./events.ts";
export {
  linkOfProgram,
  linkState,
  openPinnedLink,
  pinLink,
  updateLink,
  type XdpLink,
} from "./links.ts";
export {
  BpfMap,
  Datapath,
  type LoadedProgram,
  openProgram,
  progInfo,
  PROGRAM_NAME,
  programAttachId,
  sumPerCpu,
  testRun,
  u32Key,
  xdpDetach,
  type XdpMode,
  type XdpProgram,
  xdpQuery,
} from "./object.ts";
export { type InstalledPolicy, PolicySlots, readCounterRange } from "./policy_slots.ts";
export {
  attachTcEgress,
  detachTcEgress,
  TC_HANDLE,
  TC_PRIORITY,
  type TcEgressAttachment,
  tcEgressProgram,
} from "./tc.ts";
