/**
 * XDP attachments held by BPF links (docs/OPERATIONS.md, "Pins"): a link is
 * created with the XDP mode flags, pinned under `--pin-path` so that it
 * outlives the agent (a crash or SIGKILL leaves the filter enforcing), and
 * switched to a new program instance atomically (`bpf_link_update` with
 * `BPF_F_REPLACE`), which is how a restarted agent adopts what it finds.
 * Unpinned and closed, a link detaches its program.
 *
 * A link's interface index is that of its network namespace: these calls act
 * in the namespace of the calling thread where it matters (creating a link,
 * finding the link of an interface).
 *
 * @module
 */

import * as bpf from "../ffi/mod.ts";
import { close as closeFd } from "../ffi/mod.ts";
import { openProgram, type XdpMode } from "./object.ts";

const MODE_FLAGS: Record<XdpMode, number> = {
  native: bpf.XDP_FLAGS_DRV_MODE,
  generic: bpf.XDP_FLAGS_SKB_MODE,
};

/** An fd of an XDP link; closing it (when it is not pinned) detaches the program. */
export interface XdpLink {
  readonly fd: number;
  /** The kernel's link id. */
  readonly id: number;
  close(): void;
}

function wrap(fd: number): XdpLink {
  let open = true;
  let id: number;
  try {
    id = bpf.linkInfo(fd).id;
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return {
    fd,
    id,
    close() {
      if (open) closeFd(fd);
      open = false;
    },
  };
}

/** Attaches `progFd` at XDP on `ifindex` in `mode` with a new link (EBUSY if a program is there). */
export function createXdpLink(progFd: number, ifindex: number, mode: XdpMode): XdpLink {
  return wrap(bpf.linkCreateXdp(progFd, ifindex, MODE_FLAGS[mode]));
}

/** The link pinned at `path`, or null when nothing is pinned there. */
export function openPinnedLink(path: string): XdpLink | null {
  try {
    Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return wrap(bpf.objGet(path));
}

/** The link with id `id` (its fd). */
export function openLinkById(id: number): XdpLink {
  return wrap(bpf.linkGetFdById(id));
}

/** What a link does now. */
export interface LinkState {
  readonly id: number;
  readonly progId: number;
  /** The interface (0 once it is gone). */
  readonly ifindex: number;
  /** The interface is gone: the link attaches nothing (and lives on while pinned). */
  readonly defunct: boolean;
  readonly xdp: boolean;
}

/** The state of `link`. */
export function linkState(link: XdpLink): LinkState {
  const i = bpf.linkInfo(link.fd);
  const xdp = i.type === bpf.BPF_LINK_TYPE_XDP;
  return { id: i.id, progId: i.progId, ifindex: i.ifindex, defunct: xdp && i.ifindex === 0, xdp };
}

/**
 * Switches `link` to `newProgFd` atomically; with `oldProgId`, only if the
 * link still runs that program (else BpfError EPERM).
 */
export function updateLink(link: XdpLink, newProgFd: number, oldProgId?: number): void {
  if (oldProgId === undefined) {
    bpf.linkUpdate(link.fd, newProgFd);
    return;
  }
  const old = openProgram(oldProgId);
  try {
    bpf.linkUpdate(link.fd, newProgFd, old.fd);
  } finally {
    old.close();
  }
}

/** Pins `link` at `path` (a bpffs path; its directory must exist). */
export function pinLink(link: XdpLink, path: string): void {
  bpf.objPin(link.fd, path);
}

/**
 * The XDP link that attaches program `progId` (found among every link of the
 * kernel), or null when it is attached otherwise (netlink) or not at all.
 */
export function linkOfProgram(progId: number): XdpLink | null {
  for (const id of bpf.linkIds()) {
    let link: XdpLink;
    try {
      link = openLinkById(id);
    } catch {
      continue; // gone meanwhile
    }
    try {
      const s = linkState(link);
      if (s.xdp && s.progId === progId && !s.defunct) return link;
    } catch {
      // gone meanwhile
    }
    link.close();
  }
  return null;
}
