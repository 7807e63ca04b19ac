/**
 * The CNI bridge plugin (containernetworking-plugins 1.1.1, /usr/lib/cni),
 * called the way kubelet/CRI would: one bridge per {@link CniNetwork}, a veth
 * per ADD into the pod's network namespace, host-local IPAM in a private data
 * dir. Run as root.
 *
 * Found here: ADD takes ~20 ms (IPv4); it creates the bridge on first use and gives it
 * the gateway address (`isGateway`), and, being a gateway, it turns on
 * `net.ipv4.ip_forward` (and `net.ipv6.conf.all.forwarding` with an IPv6
 * range) in the host namespace, as on any Kubernetes node; they are set back
 * to what they were when this process's last network is deleted. IPv6 addresses can still be "tentative" (DAD) right after ADD;
 * {@link cniAdd} waits until they are usable: ~1.7 s on the first ADD of a
 * network with an IPv6 range (the new bridge's DAD), nothing after that (the
 * plugin itself settles the container side). DEL succeeds when the namespace
 * or the veth is already gone.
 *
 * @module
 */

import { run, uniqueName } from "./netns.ts";

const PLUGIN_DIR = "/usr/lib/cni";

/** A bridge network made by {@link createCniNetwork}. */
export interface CniNetwork {
  /** Bridge (and network) name, e.g. `tfwcb1a2b3c`. */
  bridge: string;
  /** IPv4 subnet, e.g. `10.88.37.0/24`; the bridge gets `.1`. */
  subnet4: string;
  /** IPv6 subnet, if any, e.g. `fd88:37::/64`. */
  subnet6?: string;
  /** host-local IPAM's data dir (a temp dir). */
  dataDir: string;
}

/** Options of {@link cniAdd} and {@link cniDel}. */
export interface CniAttachOptions {
  /** The container (sandbox) id, as CRI passes it. */
  containerId: string;
  /** Path of the network namespace, e.g. `/run/netns/NAME`. */
  netns: string;
  /** Interface name inside the namespace; default `eth0`. */
  ifname?: string;
  /** CNI_ARGS pairs, e.g. `{ K8S_POD_NAME: "web" }` (sent with IgnoreUnknown=1). */
  args?: Record<string, string>;
}

/** What {@link cniAdd} got from the plugin. */
export interface CniResult {
  /** The container's IPv4 address (no prefix length). */
  ip4: string;
  /** The container's IPv6 address, with an IPv6 range. */
  ip6?: string;
  /** The host-side veth (in the test's namespace, enslaved to the bridge). */
  hostVeth: string;
  /** The IPv4 gateway (the bridge's address). */
  gateway4: string;
  /** The IPv6 gateway, with an IPv6 range. */
  gateway6?: string;
  /** The plugin's raw result (CNI 1.0.0). */
  raw: CniRawResult;
}

/** The CNI 1.0.0 result as the bridge plugin prints it. */
export interface CniRawResult {
  cniVersion: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { interface?: number; address: string; gateway?: string }[];
  routes?: { dst: string; gw?: string }[];
  dns?: unknown;
}

/** Subnets already routed here (so a new network does not overlap them). */
async function routedPrefixes(): Promise<string> {
  const r = await run(["ip", "-4", "route", "show", "table", "all"], { allowFailure: true });
  return r.stdout;
}

/** The forwarding sysctls the bridge plugin turns on, as they were before this process's first network. */
const FORWARDING = ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"];
let forwardingBefore: string[] | null = null;
let openNetworks = 0;

/**
 * Creates a network description with a unique bridge name (`tfwcb` + 6 hex,
 * 11 characters) and a host-local data dir. Default IPv4 subnet:
 * `10.88.X.0/24` with a random X not routed here yet; IPv6 only if
 * `subnet6` is given (e.g. `fd88:X::/64`). The bridge itself appears with the
 * first {@link cniAdd}.
 */
export async function createCniNetwork(
  opts: { subnet4?: string; subnet6?: string } = {},
): Promise<CniNetwork> {
  if (openNetworks++ === 0) {
    forwardingBefore = await Promise.all(FORWARDING.map((f) => Deno.readTextFile(f)));
  }
  let subnet4 = opts.subnet4;
  if (!subnet4) {
    const routes = await routedPrefixes();
    for (let i = 0; i < 50 && !subnet4; i++) {
      const x = 1 + crypto.getRandomValues(new Uint8Array(1))[0] % 254;
      if (!routes.includes(`10.88.${x}.`)) subnet4 = `10.88.${x}.0/24`;
    }
    if (!subnet4) throw new Error("no free 10.88.X.0/24 subnet");
  }
  const dataDir = await Deno.makeTempDir({ prefix: "tfwcni-" });
  return { bridge: uniqueName("tfwcb"), subnet4, subnet6: opts.subnet6, dataDir };
}

/** The network configuration (stdin of the plugin). */
function netConf(net: CniNetwork): string {
  const ranges = [[{ subnet: net.subnet4 }]];
  if (net.subnet6) ranges.push([{ subnet: net.subnet6 }]);
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: net.bridge,
    type: "bridge",
    bridge: net.bridge,
    isGateway: true,
    ipMasq: false,
    ipam: { type: "host-local", ranges, dataDir: net.dataDir },
  });
}

/** Runs the bridge plugin; resolves with its exit code and output. */
async function callPlugin(
  net: CniNetwork,
  command: "ADD" | "DEL",
  opts: CniAttachOptions,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = Object.entries(opts.args ?? {}).map(([k, v]) => `${k}=${v}`);
  const env: Record<string, string> = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: opts.containerId,
    CNI_NETNS: opts.netns,
    CNI_IFNAME: opts.ifname ?? "eth0",
    CNI_PATH: PLUGIN_DIR,
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  };
  if (args.length > 0) env.CNI_ARGS = ["IgnoreUnknown=1", ...args].join(";");
  const child = new Deno.Command(`${PLUGIN_DIR}/bridge`, {
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env,
    clearEnv: true,
  }).spawn();
  const w = child.stdin.getWriter();
  try {
    await w.write(new TextEncoder().encode(netConf(net)));
    await w.close();
  } catch {
    // the plugin exited without reading
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Waits (5 s at most) until no IPv6 address on `dev` (in `netns`, if given) is tentative. */
async function waitNoTentative(dev: string, netns?: string): Promise<void> {
  const argv = netns
    ? ["nsenter", `--net=${netns}`, "ip", "-6", "addr", "show", "dev", dev, "tentative"]
    : ["ip", "-6", "addr", "show", "dev", dev, "tentative"];
  for (let i = 0; i < 250; i++) {
    const r = await run(argv, { allowFailure: true });
    if (r.code !== 0 || r.stdout.trim() === "") return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * CNI ADD: a veth from the bridge into `opts.netns` (as `ifname`, default
 * eth0) with addresses from host-local. Throws with the plugin's error.
 */
export async function cniAdd(net: CniNetwork, opts: CniAttachOptions): Promise<CniResult> {
  const r = await callPlugin(net, "ADD", opts);
  if (r.code !== 0) {
    throw new Error(`CNI ADD ${opts.containerId} on ${net.bridge} failed: ${r.stdout} ${r.stderr}`);
  }
  const raw = JSON.parse(r.stdout) as CniRawResult;
  const ifs = raw.interfaces ?? [];
  const hostVeth = ifs.find((i) => !i.sandbox && i.name !== net.bridge)?.name;
  const ip = (v6: boolean) => raw.ips?.find((i) => i.address.includes(":") === v6);
  const v4 = ip(false);
  const v6 = ip(true);
  if (!hostVeth || !v4?.gateway) {
    await cniDel(net, opts);
    throw new Error(`unexpected CNI result: ${r.stdout}`);
  }
  if (v6) {
    await waitNoTentative(net.bridge);
    await waitNoTentative(opts.ifname ?? "eth0", opts.netns);
  }
  return {
    ip4: v4.address.split("/")[0],
    ip6: v6?.address.split("/")[0],
    hostVeth,
    gateway4: v4.gateway,
    gateway6: v6?.gateway,
    raw,
  };
}

/**
 * CNI DEL: removes the veth and releases the addresses. Never throws: a
 * namespace that is already gone is passed as an empty CNI_NETNS (the plugin
 * then only releases the IPAM reservation); other failures are logged.
 */
export async function cniDel(net: CniNetwork, opts: CniAttachOptions): Promise<void> {
  try {
    let netns = opts.netns;
    try {
      Deno.statSync(netns);
    } catch {
      netns = "";
    }
    const r = await callPlugin(net, "DEL", { ...opts, netns });
    if (r.code !== 0) {
      console.warn(`CNI DEL ${opts.containerId} on ${net.bridge}: ${r.stdout} ${r.stderr}`);
    }
  } catch (e) {
    console.warn(`CNI DEL ${opts.containerId} on ${net.bridge}: ${e}`);
  }
}

/** Deletes the bridge (if it exists) and the IPAM data dir; never throws. */
export async function deleteCniNetwork(net: CniNetwork): Promise<void> {
  await run(["ip", "link", "del", net.bridge], { allowFailure: true }).catch(() => {});
  await Deno.remove(net.dataDir, { recursive: true }).catch(() => {});
  if (--openNetworks === 0 && forwardingBefore) {
    const before = forwardingBefore;
    forwardingBefore = null;
    await Promise.all(FORWARDING.map((f, i) => Deno.writeTextFile(f, before[i]).catch(() => {})));
  }
}
