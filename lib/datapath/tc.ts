/**
 * The tc egress hook of a host interface, where tinyfw's flow learner runs
 * (docs/DATAPATH.md §7): a clsact qdisc, and on its egress side one BPF
 * filter of ours, identified by a fixed handle and priority.
 *
 * Ownership: {@link attachTcEgress} creates the clsact qdisc only if the
 * interface has none, and says whether it did; {@link detachTcEgress} removes
 * only our filter (and only if it still runs the program we expect), then
 * removes the qdisc only if we created it and no filter is left on it, in
 * either direction. A clsact qdisc that was there before tinyfw stays, with
 * everything else on it. The learner returns TC_ACT_UNSPEC, so filters after
 * it still run and decide.
 *
 * Every function acts in the network namespace of the calling thread (see
 * `inNetns` in lib/ffi/libc.ts).
 *
 * @module
 */

import * as bpf from "../ffi/mod.ts";
import { EINVAL, ENODEV, ENOENT } from "../ffi/mod.ts";
import {
  RtnetlinkClient,
  TC_PARENT_CLSACT_EGRESS,
  TC_PARENT_CLSACT_INGRESS,
} from "../netlink/mod.ts";
import { progInfo, TC_PROGRAM_NAME } from "./object.ts";

/** The handle of tinyfw's filter ("tf"). */
export const TC_HANDLE = 0x7466;
/** Its priority: 1, so it sees what the host sends before other filters decide. */
export const TC_PRIORITY = 1;

/** Where tinyfw's filter is (handle and priority), if not the defaults. */
export interface TcFilterOptions {
  handle?: number;
  priority?: number;
}

/** What {@link attachTcEgress} did. Keep it: {@link detachTcEgress} needs it. */
export interface TcEgressAttachment {
  readonly ifindex: number;
  readonly handle: number;
  readonly priority: number;
  /** The id of the program the filter runs. */
  readonly progId: number;
  /** True if the clsact qdisc was created for this attachment. */
  readonly createdQdisc: boolean;
}

function egress(ifindex: number): bpf.TcHook {
  return { ifindex, attachPoint: bpf.BPF_TC_EGRESS };
}

function filterId(opts: TcFilterOptions): bpf.TcFilterId {
  return { handle: opts.handle ?? TC_HANDLE, priority: opts.priority ?? TC_PRIORITY };
}

/**
 * Attaches `progFd` (the learner, `Datapath.tcLearner()`) as a direct-action
 * BPF filter on the egress side of `ifindex`'s clsact qdisc, creating the
 * qdisc if there is none. A filter already at our handle and priority makes it
 * fail (BpfError EEXIST) unless `replace` is set (e.g. to take over a learner
 * a previous agent left; check it with {@link tcEgressProgram} first). On
 * failure a qdisc created here is removed again.
 */
export function attachTcEgress(
  ifindex: number,
  progFd: number,
  opts: TcFilterOptions & { replace?: boolean } = {},
): TcEgressAttachment {
  const hook = egress(ifindex);
  const createdQdisc = bpf.tcHookCreate(hook);
  try {
    const id = filterId(opts);
    const r = bpf.tcAttach(hook, { progFd, ...id, replace: opts.replace });
    return { ifindex, handle: r.handle, priority: r.priority, progId: r.progId, createdQdisc };
  } catch (e) {
    if (createdQdisc) {
      try {
        removeQdiscIfEmpty(ifindex);
      } catch {
        // the attach error is the one to report
      }
    }
    throw e;
  }
}

/** What {@link detachTcEgress} removed. */
export interface TcDetachResult {
  /** Our filter was there and is gone. */
  filterRemoved: boolean;
  /** The clsact qdisc was ours, empty, and is gone. */
  qdiscRemoved: boolean;
}

/**
 * Removes tinyfw's filter from the egress side of `ifindex`: only if it runs
 * `progId` (when given; a filter replaced by someone else is left alone).
 * Then, if `createdQdisc`, removes the clsact qdisc when no filter is left on
 * it in either direction. An interface that is gone is not an error (nothing
 * is left to remove).
 */
export function detachTcEgress(
  ifindex: number,
  opts: TcFilterOptions & { progId?: number; createdQdisc?: boolean } = {},
): TcDetachResult {
  const hook = egress(ifindex);
  const id = filterId(opts);
  const result: TcDetachResult = { filterRemoved: false, qdiscRemoved: false };
  try {
    const current = bpf.tcQuery(hook, id);
    if (current !== null && (opts.progId === undefined || current === opts.progId)) {
      try {
        bpf.tcDetach(hook, id);
        result.filterRemoved = true;
      } catch (e) {
        if (!(e instanceof bpf.BpfError && e.errno === ENOENT)) throw e;
      }
    }
    if (opts.createdQdisc) result.qdiscRemoved = removeQdiscIfEmpty(ifindex);
  } catch (e) {
    if (e instanceof bpf.BpfError && e.errno === ENODEV) return result;
    throw e;
  }
  return result;
}

/** The program on tinyfw's egress filter of `ifindex`, and whether it is a tinyfw learner. */
export function tcEgressProgram(
  ifindex: number,
  opts: TcFilterOptions = {},
): { progId: number; tinyfw: boolean } | null {
  const progId = bpf.tcQuery(egress(ifindex), filterId(opts));
  if (progId === null) return null;
  let tinyfw = false;
  try {
    const info = progInfo({ id: progId });
    tinyfw = info.type === bpf.BPF_PROG_TYPE_SCHED_CLS && info.name === TC_PROGRAM_NAME;
  } catch {
    // gone meanwhile
  }
  return { progId, tinyfw };
}

/** Whether `ifindex` has any filter on its clsact qdisc (ingress or egress). */
export function clsactHasFilters(ifindex: number): boolean {
  const rtnl = RtnetlinkClient.open();
  try {
    return rtnl.listTcFilters(ifindex, TC_PARENT_CLSACT_INGRESS).length > 0 ||
      rtnl.listTcFilters(ifindex, TC_PARENT_CLSACT_EGRESS).length > 0;
  } finally {
    rtnl.close();
  }
}

function removeQdiscIfEmpty(ifindex: number): boolean {
  if (clsactHasFilters(ifindex)) return false;
  try {
    bpf.tcHookDestroy({ ifindex, attachPoint: bpf.BPF_TC_INGRESS | bpf.BPF_TC_EGRESS });
    return true;
  } catch (e) {
    if (e instanceof bpf.BpfError && (e.errno === ENOENT || e.errno === EINVAL)) return false;
    throw e;
  }
}
