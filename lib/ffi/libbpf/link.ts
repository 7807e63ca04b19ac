/**
 * BPF links for XDP: create, update atomically, find by id, info.
 *
 * @module
 */

import { BPF_F_REPLACE, BPF_LINK_TYPE_XDP, BPF_XDP } from "./constants.ts";
import { StructBuffer, STRUCTS } from "./structs.ts";
import { bpf, call, infoByFd } from "./symbols.ts";

// BPF links: an attachment held by an fd (and by its pins), gone with the last.

/**
 * bpf_link_create for XDP: attaches `progFd` on `ifindex` (in the calling
 * thread's network namespace) with `flags` (XDP_FLAGS_SKB_MODE/DRV_MODE), and
 * returns the link's fd.
 */
export function linkCreateXdp(progFd: number, ifindex: number, flags: number): number {
  const opts = new StructBuffer(STRUCTS.bpf_link_create_opts).setU32("flags", flags);
  return call(
    `bpf_link_create (XDP) ifindex ${ifindex}`,
    (s) => s.bpf_link_create(progFd, ifindex, BPF_XDP, opts.bytes),
  );
}

/**
 * bpf_link_update: the link runs `newProgFd` from now on, atomically. With
 * `oldProgFd`, only if it runs that program now (else EPERM).
 */
export function linkUpdate(linkFd: number, newProgFd: number, oldProgFd?: number): void {
  const opts = new StructBuffer(STRUCTS.bpf_link_update_opts);
  if (oldProgFd !== undefined) opts.setU32("flags", BPF_F_REPLACE).setU32("old_prog_fd", oldProgFd);
  call(
    `bpf_link_update link fd ${linkFd}`,
    (s) => s.bpf_link_update(linkFd, newProgFd, opts.bytes),
  );
}

/** bpf_link_get_fd_by_id: a new (close-on-exec) fd for a link. */
export function linkGetFdById(id: number): number {
  return call(`bpf_link_get_fd_by_id ${id}`, (s) => s.bpf_link_get_fd_by_id(id));
}

/** Every link id in the kernel (bpf_link_get_next_id), in order. */
export function linkIds(): number[] {
  const ids: number[] = [];
  const next = new Uint32Array(1);
  const out = new Uint8Array(next.buffer);
  let id = 0;
  for (;;) {
    const ret = bpf().bpf_link_get_next_id(id, out);
    if (ret !== 0) break; // -ENOENT at the end
    id = next[0];
    ids.push(id);
  }
  return ids;
}

/** The parts of struct bpf_link_info tinyfw reads. */
export interface LinkInfo {
  /** enum bpf_link_type (XDP: 6). */
  type: number;
  id: number;
  progId: number;
  /** XDP links: the interface; 0 once the interface is gone (the link is defunct). */
  ifindex: number;
}

/** bpf_obj_get_info_by_fd on a link fd. */
export function linkInfo(fd: number): LinkInfo {
  const info = new StructBuffer(STRUCTS.bpf_link_info);
  infoByFd("bpf_obj_get_info_by_fd (link)", fd, info.bytes);
  const type = info.u32("type");
  return {
    type,
    id: info.u32("id"),
    progId: info.u32("prog_id"),
    ifindex: type === BPF_LINK_TYPE_XDP ? info.u32("xdp.ifindex") : 0,
  };
}
