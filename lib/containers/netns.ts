/**
 * A container's network namespace, and its veth pairs to the host, found by
 * namespace identity (SPEC §4): the nsid this namespace gives it and the
 * peer ifindex of each host-side veth (IFLA_LINK_NETNSID + IFLA_LINK), never
 * by interface name, so any plugin's naming works.
 *
 * @module
 */

import { close as closeFd, open as openFd } from "../ffi/mod.ts";
import { type Link, NETNSA_NSID_NOT_ASSIGNED, type RtnetlinkClient } from "../netlink/mod.ts";

/** A network namespace's identity: the device and inode of its nsfs file ("dev:ino"). */
export type NetnsId = string;

/** The identity of the namespace at `path` (`/proc/PID/ns/net`, `/proc/self/fd/N`, `/run/netns/X`). */
export function netnsIdOf(path: string): NetnsId {
  const st = Deno.statSync(path);
  return `${st.dev}:${st.ino}`;
}

/** The identity of the agent's own network namespace (the host's). */
export function hostNetnsId(): NetnsId {
  return netnsIdOf("/proc/self/ns/net");
}

/** An open network namespace: held open while tinyfw filters inside it, closed on release. */
export class NetnsHandle {
  readonly fd: number;
  readonly id: NetnsId;

  private constructor(fd: number, id: NetnsId) {
    this.fd = fd;
    this.id = id;
  }

  /**
   * Opens the network namespace of process `pid`. The identity is read from
   * the open descriptor, so it is the namespace held even if `pid` has gone
   * and been reused meanwhile. Throws (NotFound) when the process is gone.
   */
  static ofPid(pid: number): NetnsHandle {
    let fd: number;
    try {
      fd = openFd(`/proc/${pid}/ns/net`);
    } catch (e) {
      throw new Deno.errors.NotFound(`process ${pid} is gone (${(e as Error).message})`);
    }
    try {
      return new NetnsHandle(fd, netnsIdOf(`/proc/self/fd/${fd}`));
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }

  /** Opens the network namespace at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`). */
  static ofPath(path: string): NetnsHandle {
    const fd = openFd(path);
    try {
      return new NetnsHandle(fd, netnsIdOf(`/proc/self/fd/${fd}`));
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }

  /** Releases the namespace (it may then disappear, taking its interfaces with it). */
  close(): void {
    closeFd(this.fd);
  }
}

/** A veth pair between the host and a container's namespace. */
export interface VethPair {
  /** The host end: ifindex and name in the host namespace. */
  readonly hostIndex: number;
  readonly hostName: string;
  /** The container end's ifindex, inside the container's namespace. */
  readonly peerIndex: number;
}

/**
 * The nsid the host namespace gives the namespace open as `nsFd`, or -1 if it
 * has none because no link connects the two. A link dump assigns nsids to the
 * namespaces veth peers live in, so an unassigned one is asked again after it.
 */
export function nsidOf(rtnl: RtnetlinkClient, nsFd: number): number {
  const nsid = rtnl.getNsidByFd(nsFd);
  if (nsid !== NETNSA_NSID_NOT_ASSIGNED) return nsid;
  rtnl.listLinks();
  return rtnl.getNsidByFd(nsFd);
}

/** True for a host-side veth whose peer lives in another namespace. */
export function isForeignVeth(link: Link): boolean {
  return link.kind === "veth" && link.linkNetnsid !== undefined && link.linkIndex !== undefined;
}

/** The host ends (from a host link dump) of the veth pairs whose peers live in namespace `nsid`. */
export function vethPairsTo(links: readonly Link[], nsid: number): VethPair[] {
  if (nsid === NETNSA_NSID_NOT_ASSIGNED) return [];
  return links.filter((l) => isForeignVeth(l) && l.linkNetnsid === nsid).map((l) => ({
    hostIndex: l.index,
    hostName: l.name,
    peerIndex: l.linkIndex!,
  }));
}
