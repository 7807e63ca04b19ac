/**
 * tc (clsact) hooks and BPF filters, through libbpf's netlink calls.
 *
 * @module
 */

import { BPF_TC_F_REPLACE } from "./constants.ts";
import { StructBuffer, STRUCTS } from "./structs.ts";
import { begin, bpfError, call } from "./symbols.ts";
import { EEXIST, EINVAL, ENOENT } from "../errno.ts";

// tc (clsact) hooks and BPF filters, through libbpf's netlink calls. Each acts
// in the network namespace of the calling thread.

/** Where a tc hook is: an interface and ingress/egress (BPF_TC_*) of its clsact qdisc. */
export interface TcHook {
  ifindex: number;
  /** BPF_TC_INGRESS or BPF_TC_EGRESS (BPF_TC_INGRESS | BPF_TC_EGRESS: the whole qdisc). */
  attachPoint: number;
}

/** A BPF filter on a tc hook: its handle and priority (1..65535) identify it. */
export interface TcFilterId {
  handle: number;
  priority: number;
}

function tcHook(h: TcHook): Uint8Array<ArrayBuffer> {
  // `parent` stays 0: the clsact qdisc's own.
  return new StructBuffer(STRUCTS.bpf_tc_hook)
    .setI32("ifindex", h.ifindex)
    .setU32("attach_point", h.attachPoint).bytes;
}

function tcOpts(o: { progFd?: number; flags?: number; handle?: number; priority?: number }) {
  return new StructBuffer(STRUCTS.bpf_tc_opts)
    .setI32("prog_fd", o.progFd ?? 0)
    .setU32("flags", o.flags ?? 0)
    .setU32("handle", o.handle ?? 0)
    .setU32("priority", o.priority ?? 0);
}

/**
 * bpf_tc_hook_create: adds a clsact qdisc to the interface. Returns true if it
 * was created, false if one was there already (EEXIST).
 */
export function tcHookCreate(hook: TcHook): boolean {
  const ret = begin().bpf_tc_hook_create(tcHook(hook));
  if (ret === -EEXIST) return false;
  if (ret < 0) throw bpfError(`bpf_tc_hook_create ifindex ${hook.ifindex}`, ret);
  return true;
}

/**
 * bpf_tc_hook_destroy. With attachPoint BPF_TC_INGRESS | BPF_TC_EGRESS it
 * deletes the clsact qdisc (and every filter on it); with one of them, it
 * deletes every filter of that hook.
 */
export function tcHookDestroy(hook: TcHook): void {
  call(
    `bpf_tc_hook_destroy ifindex ${hook.ifindex}`,
    (s) => s.bpf_tc_hook_destroy(tcHook(hook)),
  );
}

/**
 * bpf_tc_attach: a direct-action BPF filter running `progFd` on the hook.
 * `handle`/`priority` 0 let the kernel choose; with `replace` an existing
 * filter of that handle and priority is replaced, else one there fails EEXIST.
 * Returns the filter's handle and priority and the program id.
 */
export function tcAttach(
  hook: TcHook,
  opts: { progFd: number; handle?: number; priority?: number; replace?: boolean },
): TcFilterId & { progId: number } {
  const o = tcOpts({
    progFd: opts.progFd,
    handle: opts.handle,
    priority: opts.priority,
    flags: opts.replace ? BPF_TC_F_REPLACE : 0,
  });
  call(`bpf_tc_attach ifindex ${hook.ifindex}`, (s) => s.bpf_tc_attach(tcHook(hook), o.bytes));
  return { progId: o.u32("prog_id"), handle: o.u32("handle"), priority: o.u32("priority") };
}

/** bpf_tc_detach: deletes the BPF filter `id` of the hook (ENOENT if there is none). */
export function tcDetach(hook: TcHook, id: TcFilterId): void {
  call(
    `bpf_tc_detach ifindex ${hook.ifindex}`,
    (s) => s.bpf_tc_detach(tcHook(hook), tcOpts(id).bytes),
  );
}

/** bpf_tc_query: the id of the program of BPF filter `id`, or null if there is no such filter. */
export function tcQuery(hook: TcHook, id: TcFilterId): number | null {
  const o = tcOpts(id);
  const ret = begin().bpf_tc_query(tcHook(hook), o.bytes);
  if (ret === -ENOENT || ret === -EINVAL) {
    // ENOENT: no filter there; EINVAL: no clsact qdisc at all (the kernel's answer).
    return null;
  }
  if (ret < 0) throw bpfError(`bpf_tc_query ifindex ${hook.ifindex}`, ret);
  return o.u32("prog_id");
}
