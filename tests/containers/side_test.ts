/**
 * Both ends of a container's veth filtered by program instances from the
 * pool: the host end (egress) in our namespace, the container end (ingress)
 * inside the container's namespace through its open descriptor. Real
 * traffic between the host and the namespace; no containerd here (see
 * tests/e2e/containers_test.ts for that).
 */
import assert from "node:assert/strict";
import { Datapath } from "../../lib/datapath/object.ts";
import { PolicySlots } from "../../lib/datapath/policy_slots.ts";
import { AttachIds } from "../../lib/datapath/attach_ids.ts";
import { DIR_EGRESS, DIR_INGRESS } from "../../lib/abi/layout.ts";
import { compilePolicy } from "../../lib/policy/compile/compile.ts";
import { NetnsHandle, nsidOf, vethPairsTo } from "../../lib/containers/netns.ts";
import { attachSide, detachSide, InstancePool } from "../../lib/containers/side.ts";
import { RtnetlinkClient } from "../../lib/netlink/rtnetlink.ts";
import { createVethPair, Netns } from "../helpers/netns.ts";
import { NETPEER, reach, startServer, xdpOf } from "../helpers/topology.ts";
import { makePolicy } from "../helpers/gen.ts";

Deno.test("containers: both ends of a veth filtered, found by nsid, detached and given back", async () => {
  const ns = await Netns.create("tfwc");
  const dp = Datapath.load();
  const rtnl = RtnetlinkClient.open();
  let handle: NetnsHandle | undefined;
  try {
    const veth = await createVethPair({
      prefix: "tfwc",
      peerNetns: ns,
      hostAddrs: ["10.79.0.1/30", "fd79::1/64"],
      peerAddrs: ["10.79.0.2/30", "fd79::2/64"],
    });
    const server = await ns.spawn(["sleep", "30"]);
    // The namespace as containers mode finds it: through a process in it.
    handle = NetnsHandle.ofPid(server.pid);
    const pairs = vethPairsTo(rtnl.listLinks(), nsidOf(rtnl, handle.fd));
    assert.deepEqual(pairs, [{
      hostIndex: veth.hostIndex,
      hostName: veth.host,
      peerIndex: veth.peerIndex,
    }]);

    const slots = new PolicySlots(dp);
    // Ingress: only TCP 8080 enters. Egress: TCP 9090 may not leave.
    const inst = slots.install(compilePolicy(makePolicy(
      "allow",
      { direction: "ingress", protocol: "tcp", ports: [8080] },
      { direction: "ingress", action: "deny" },
      { direction: "egress", protocol: "tcp", ports: [9090], action: "deny" },
    )));
    const pool = new InstancePool(dp, slots, {
      ids: new AttachIds(dp.maps.attach.maxEntries),
      spare: 2,
    });
    pool.refill();
    assert.equal(pool.spare, 2);
    const eg = pool.take();
    slots.configureAttachment(eg.attachId, inst.slot, DIR_EGRESS, { learn: true });
    const egress = attachSide(eg, pairs[0].hostIndex, "auto");
    const ig = pool.take();
    slots.configureAttachment(ig.attachId, inst.slot, DIR_INGRESS, { learn: true });
    const ingress = attachSide(ig, pairs[0].peerIndex, "auto", { nsFd: handle.fd });
    assert.equal(pool.inUse, 2);
    assert.notEqual(eg.attachId, ig.attachId);
    const hostXdp = rtnl.getLink(veth.host)!.xdp;
    assert.equal(hostXdp.progId || hostXdp.drvProgId || hostXdp.skbProgId, eg.id);
    const peerXdp = xdpOf(ns, veth.peer);
    assert.equal(peerXdp.progId || peerXdp.drvProgId || peerXdp.skbProgId, ig.id);

    await startServer(ns, { tcp: [8080, 8081] });
    assert.equal(await reachFromHost("10.79.0.2", 8080), true, "ingress 8080 allowed");
    assert.equal(await reachFromHost("10.79.0.2", 8081), false, "ingress 8081 denied");
    assert.equal(await reachFromHost("fd79::2", 8080), true, "ingress 8080 allowed (v6)");
    // Egress: from the namespace to a server here on the host end's address.
    const stopServer = serveHere("10.79.0.1", [9090, 9091]);
    try {
      assert.equal(await reach(ns, "tcp", "10.79.0.1", 9091), true, "egress 9091 allowed");
      assert.equal(await reach(ns, "tcp", "10.79.0.1", 9090), false, "egress 9090 denied");
    } finally {
      await stopServer();
    }

    assert.equal(detachSide(ingress), true);
    assert.equal(detachSide(egress), true);
    pool.give(ig);
    pool.give(eg);
    assert.equal(pool.inUse, 0);
    assert.equal(xdpOf(ns, veth.peer).mode, "none");
    assert.equal(rtnl.getLink(veth.host)!.xdp.mode, "none");
    assert.equal(await reachFromHost("10.79.0.2", 8081), true, "unfiltered again");
    // A side whose interface went away with its namespace detaches as "nothing to do".
    const again = pool.take();
    slots.configureAttachment(again.attachId, inst.slot, DIR_INGRESS);
    const late = attachSide(again, pairs[0].peerIndex, "generic", { nsFd: handle.fd });
    await veth.delete();
    assert.equal(detachSide(late), false);
    pool.give(again);
    pool.close();
    slots.remove(inst);
  } finally {
    handle?.close();
    rtnl.close();
    dp.close();
    await ns.delete();
  }
});

Deno.test("containers: a foreign XDP program on a container's interface is left alone", async () => {
  const ns = await Netns.create("tfwc");
  const dp = Datapath.load();
  try {
    const veth = await createVethPair({ prefix: "tfwc", peerNetns: ns });
    await ns.exec([
      "ip",
      "link",
      "set",
      "dev",
      veth.peer,
      "xdpgeneric",
      "obj",
      BENCH_EMPTY,
      "sec",
      "xdp",
    ]);
    const slots = new PolicySlots(dp);
    const pool = new InstancePool(dp, slots, {
      ids: new AttachIds(dp.maps.attach.maxEntries),
      spare: 0,
    });
    const prog = pool.take();
    const handle = NetnsHandle.ofPath(ns.path);
    try {
      assert.throws(
        () => attachSide(prog, veth.peerIndex, "auto", { nsFd: handle.fd }),
        /did not install/,
      );
    } finally {
      handle.close();
    }
    pool.give(prog);
    assert.notEqual(xdpOf(ns, veth.peer).mode, "none");
  } finally {
    dp.close();
    await ns.delete();
  }
});

const BENCH_EMPTY = new URL("../../bpf/bench_empty.bpf.o", import.meta.url).pathname;

/** Whether a TCP connection from this (the host's) namespace gets the peer's greeting. */
async function reachFromHost(host: string, port: number): Promise<boolean> {
  const args = ["run", "--allow-all", "--quiet", NETPEER, "tcp", host, String(port), "1500"];
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "null" })
    .output();
  return out.code === 0;
}

/**
 * TCP servers here, on `address` only (the host end of the test's veth), that
 * greet like tests/helpers/netpeer.ts; returns the function that stops them.
 */
function serveHere(address: string, ports: number[]): () => Promise<void> {
  const listeners = ports.map((port) => Deno.listen({ hostname: address, port }));
  const loops = listeners.map(async (l) => {
    for await (const conn of l) {
      await conn.write(new TextEncoder().encode("hello\n")).catch(() => {});
      conn.close();
    }
  });
  return async () => {
    for (const l of listeners) l.close();
    await Promise.allSettled(loops);
  };
}
