/**
 * XDP attachments by netlink (bpf_xdp_attach/detach/query).
 *
 * @module
 */

import { StructBuffer, STRUCTS } from "./structs.ts";
import { call } from "./symbols.ts";

// XDP.

function xdpAttachOpts(oldProgFd: number | undefined): Uint8Array<ArrayBuffer> {
  return new StructBuffer(STRUCTS.bpf_xdp_attach_opts).setI32("old_prog_fd", oldProgFd ?? 0).bytes;
}

/** bpf_xdp_attach (netlink; the attachment outlives the process). */
export function xdpAttach(
  ifindex: number,
  progFd: number,
  flags: number,
  oldProgFd?: number,
): void {
  call(
    `bpf_xdp_attach ifindex ${ifindex}`,
    (s) => s.bpf_xdp_attach(ifindex, progFd, flags, xdpAttachOpts(oldProgFd)),
  );
}

/** bpf_xdp_detach; with XDP_FLAGS_REPLACE and `oldProgFd`, only if that program is attached. */
export function xdpDetach(ifindex: number, flags: number, oldProgFd?: number): void {
  call(
    `bpf_xdp_detach ifindex ${ifindex}`,
    (s) => s.bpf_xdp_detach(ifindex, flags, xdpAttachOpts(oldProgFd)),
  );
}

/** What bpf_xdp_query reports (0 = no program). */
export interface XdpQueryResult {
  /** The program id when exactly one mode is attached. */
  progId: number;
  drvProgId: number;
  hwProgId: number;
  skbProgId: number;
  /** XDP_ATTACHED_* (lib/netlink/constants.ts names them). */
  attachMode: number;
}

/** bpf_xdp_query. */
export function xdpQuery(ifindex: number, flags = 0): XdpQueryResult {
  const o = new StructBuffer(STRUCTS.bpf_xdp_query_opts);
  call(`bpf_xdp_query ifindex ${ifindex}`, (s) => s.bpf_xdp_query(ifindex, flags, o.bytes));
  return {
    progId: o.u32("prog_id"),
    drvProgId: o.u32("drv_prog_id"),
    hwProgId: o.u32("hw_prog_id"),
    skbProgId: o.u32("skb_prog_id"),
    attachMode: o.u8("attach_mode"),
  };
}
