/**
 * The end-to-end tests' little network: a "server" and a "client" network
 * namespace joined by a veth pair, a peer program to serve and connect, and
 * the XDP state of an interface as rtnetlink reports it.
 */
import assert from "node:assert/strict";
import { createVethPair, Netns } from "./netns.ts";
import { RtnetlinkClient } from "../../lib/netlink/rtnetlink.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const NETPEER = `${ROOT}tests/helpers/netpeer.ts`;
export const SERVER4 = "10.77.0.1";
export const SERVER6 = "fd77::1";
export const CLIENT4 = "10.77.0.2";
export const CLIENT6 = "fd77::2";

export interface Topology {
  server: Netns;
  client: Netns;
  /** The server's end of the veth: the interface the agent filters. */
  iface: string;
}

/** Runs `fn` with a fresh client/server pair of namespaces, removed afterwards. */
export async function withTopology(fn: (t: Topology) => Promise<void>): Promise<void> {
  const server = await Netns.create("tfwe");
  const client = await Netns.create("tfwe");
  try {
    const veth = await createVethPair({
      prefix: "tfwe",
      hostNetns: server,
      peerNetns: client,
      hostAddrs: [`${SERVER4}/24`, `${SERVER6}/64`],
      peerAddrs: ["10.77.0.2/24", "fd77::2/64"],
    });
    await fn({ server, client, iface: veth.host });
  } finally {
    await server.delete();
    await client.delete();
  }
}

/** Starts the peer's servers in `ns` (every address, IPv4 and IPv6) and waits until they listen. */
export async function startServer(
  ns: Netns,
  ports: { tcp?: number[]; udp?: number[] },
): Promise<void> {
  const proc = await ns.spawn([
    Deno.execPath(),
    "run",
    "--allow-all",
    "--quiet",
    NETPEER,
    "serve",
    ...(ports.tcp ? ["--tcp", ports.tcp.join(",")] : []),
    ...(ports.udp ? ["--udp", ports.udp.join(",")] : []),
  ]);
  const reader = proc.child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  assert.match(new TextDecoder().decode(value), /ready/);
}

/** Whether a TCP connect / UDP exchange from `ns` succeeds. */
export async function reach(
  ns: Netns,
  proto: "tcp" | "udp",
  host: string,
  port: number,
): Promise<boolean> {
  const r = await ns.exec(
    [Deno.execPath(), "run", "--allow-all", "--quiet", NETPEER, proto, host, String(port), "1500"],
    { allowFailure: true },
  );
  return r.code === 0;
}

export async function ping(ns: Netns, host: string): Promise<boolean> {
  const r = await ns.exec(["ping", "-c", "1", "-W", "2", host], { allowFailure: true });
  return r.code === 0;
}

/** The XDP state of `iface` inside `ns`. */
export function xdpOf(ns: Netns, iface: string) {
  return ns.enter(() => {
    const rtnl = RtnetlinkClient.open();
    try {
      return rtnl.getLink(iface)!.xdp;
    } finally {
      rtnl.close();
    }
  });
}

/** A UDP flood from the client, running until {@link Flood.stop}. */
export interface Flood {
  /** Stops it: how many datagrams were sent, and how many were echoed (got through). */
  stop(): Promise<{ sent: bigint; received: bigint }>;
  /** Kills it without a count (clean-up). */
  kill(): Promise<void>;
}

/**
 * Starts flooding `host:port` over UDP from `ns` (`perMs` datagrams a
 * millisecond) against an echoing server: every echo is a datagram that got through.
 */
export async function startFlood(ns: Netns, host: string, port: number, perMs = 5): Promise<Flood> {
  // Resolve the server's MAC first so no datagram waits (or dies) in the neighbour queue
  // (ARP or ND gets the answer even where a policy drops the echo).
  await ns.exec(["ping", "-c", "1", "-W", "1", host], { allowFailure: true });
  const proc = await ns.spawn([
    Deno.execPath(),
    "run",
    "--allow-all",
    "--quiet",
    NETPEER,
    "flood",
    host,
    String(port),
    String(perMs),
  ]);
  return {
    async stop() {
      proc.child.kill("SIGTERM");
      const out = new TextDecoder().decode((await proc.child.output()).stdout);
      const m = /sent (\d+) received (\d+)/.exec(out);
      assert.ok(m, `the flooder said: ${out}`);
      return { sent: BigInt(m[1]), received: BigInt(m[2]) };
    },
    kill: () => proc.kill(),
  };
}
