/**
 * Containers for the containers-mode tests: a network namespace per
 * container, wired either through the CNI bridge plugin (as kubelet/CRI
 * would) or with a plain veth pair, then a real container started in it by
 * the private containerd. Plus the checks the tests share: is a veth pair
 * filtered on both ends by tinyfw.
 */
import { progInfo, PROGRAM_NAME } from "../../lib/datapath/object.ts";
import { RtnetlinkClient } from "../../lib/netlink/rtnetlink.ts";
import { cniAdd, cniDel, type CniNetwork } from "./cni.ts";
import type { ContainerHandle, PrivateContainerd } from "./containerd.ts";
import { createVethPair, Netns } from "./netns.ts";
import { xdpOf } from "./topology.ts";

/** A container in its own network namespace. */
export interface Box {
  readonly ns: Netns;
  readonly ip4: string;
  /** The box's IPv6 address, for the plain-veth kind. */
  readonly ip6?: string;
  /** The host end of its veth (the name is the plugin's business: tests only use it to look). */
  readonly hostVeth: string;
  /** Its end's name inside the namespace. */
  readonly peer: string;
  /** An address on the host side to talk to from the container: the veth's host end, or the CNI bridge. */
  readonly hostIp4: string;
  container?: ContainerHandle;
  /** Stops the container (if any), removes its network and namespace. */
  remove(): Promise<void>;
}

/** Where a box's container runs and what it is labelled. */
export interface BoxSpec {
  namespace: string;
  labels?: Record<string, string>;
  /** Default: sleep for an hour. */
  cmd?: string[];
  /** Only prepare the network; {@link startIn} starts the container. */
  noContainer?: boolean;
}

const SLEEP = ["sleep", "3600"];

/** A namespace on the CNI bridge network `net`, and a container in it. */
export async function cniBox(
  cd: PrivateContainerd,
  net: CniNetwork,
  spec: BoxSpec,
): Promise<Box> {
  const ns = await Netns.create("tfwk");
  const id = ns.name;
  try {
    const res = await cniAdd(net, { containerId: id, netns: ns.path });
    const box: Box = {
      ns,
      ip4: res.ip4,
      hostIp4: res.gateway4,
      hostVeth: res.hostVeth,
      peer: "eth0",
      async remove() {
        await box.container?.stop();
        await cniDel(net, { containerId: id, netns: ns.path });
        await ns.delete();
      },
    };
    if (!spec.noContainer) await startIn(cd, box, spec);
    return box;
  } catch (e) {
    await cniDel(net, { containerId: id, netns: ns.path }).catch(() => {});
    await ns.delete();
    throw e;
  }
}

let plainCount = 0;

/**
 * A namespace joined to the host by a plain veth pair (10.81.N.1 and
 * fd81:N::1 on the host end, 10.81.N.2 and fd81:N::2 in the box), and a
 * container in it. `host`: a namespace that
 * stands in for the host's (the veth's host end goes there); default: ours.
 */
export async function vethBox(cd: PrivateContainerd, spec: BoxSpec, host?: Netns): Promise<Box> {
  const n = (plainCount++ % 250) + 1;
  const ns = await Netns.create("tfwv");
  try {
    const veth = await createVethPair({
      prefix: "tfwv",
      hostNetns: host,
      peerNetns: ns,
      hostAddrs: [`10.81.${n}.1/30`, `fd81:${n}::1/64`],
      peerAddrs: [`10.81.${n}.2/30`, `fd81:${n}::2/64`],
    });
    const box: Box = {
      ns,
      ip4: `10.81.${n}.2`,
      ip6: `fd81:${n}::2`,
      hostIp4: `10.81.${n}.1`,
      hostVeth: veth.host,
      peer: veth.peer,
      async remove() {
        await box.container?.stop();
        await ns.delete();
      },
    };
    if (!spec.noContainer) await startIn(cd, box, spec);
    return box;
  } catch (e) {
    await ns.delete();
    throw e;
  }
}

/** Starts the box's container (create + start, as `ctr run -d`). */
export async function startIn(cd: PrivateContainerd, box: Box, spec: BoxSpec): Promise<void> {
  box.container = await cd.run({
    namespace: spec.namespace,
    labels: spec.labels,
    netns: box.ns.path,
    cmd: spec.cmd ?? SLEEP,
  });
}

/** The name of the XDP program on host interface `ifname` ("" when none). */
export function hostXdpName(ifname: string): string {
  const rtnl = RtnetlinkClient.open();
  try {
    const xdp = rtnl.getLink(ifname)?.xdp;
    const id = xdp ? xdp.progId || xdp.drvProgId || xdp.skbProgId : 0;
    return id ? progInfo({ id }).name : "";
  } finally {
    rtnl.close();
  }
}

/** The name of the XDP program on the box's own end, inside its namespace ("" when none). */
export function peerXdpName(box: Box): string {
  const xdp = xdpOf(box.ns, box.peer);
  const id = xdp.progId || xdp.drvProgId || xdp.skbProgId;
  return id ? progInfo({ id }).name : "";
}

/** Whether tinyfw filters both ends of the box's veth (its host end in `host`, default ours). */
export function filtered(box: Box, host?: Netns): boolean {
  const hostName = host ? host.enter(() => hostXdpName(box.hostVeth)) : hostXdpName(box.hostVeth);
  return hostName === PROGRAM_NAME && peerXdpName(box) === PROGRAM_NAME;
}

/** Whether neither end of the box's veth has an XDP program (its host end in `host`, default ours). */
export function unfiltered(box: Box, host?: Netns): boolean {
  const hostName = host ? host.enter(() => hostXdpName(box.hostVeth)) : hostXdpName(box.hostVeth);
  return hostName === "" && peerXdpName(box) === "";
}

/** Removes boxes, newest first, whatever happened (the namespace at least, if containerd is down). */
export async function removeAll(boxes: Box[]): Promise<void> {
  for (const b of boxes.splice(0).reverse()) {
    await b.remove().catch(() => b.ns.delete().catch(() => {}));
  }
}

/** Runs `fn` with a policy file holding `text`, removed afterwards. */
export async function withPolicyFile<T>(
  text: string,
  fn: (file: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-policy-" });
  try {
    await Deno.writeTextFile(`${dir}/policy.yaml`, text);
    return await fn(`${dir}/policy.yaml`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Polls `cond` every 20 ms until it holds; false after `timeoutMs`. */
export async function eventually(cond: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}
