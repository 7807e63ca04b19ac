/**
 * The rtnetlink client against the running kernel (needs root, iproute2,
 * nsenter, clang, bpftool). Every test builds its own namespace and veth pair
 * with names prefixed "tfwn" and removes them in `finally`.
 */

import assert from "node:assert/strict";
import { RtnetlinkClient } from "../../lib/netlink/rtnetlink.ts";
import type { Link } from "../../lib/netlink/link.ts";
import type { LinkEvent } from "../../lib/netlink/link_subscription.ts";
import { NetlinkError } from "../../lib/netlink/errors.ts";
import { closeFd, openFd } from "../../lib/netlink/socket.ts";
import {
  createNetns,
  createVethPair,
  type Netns,
  nsExec,
  nsSpawn,
  run,
  uniqueName,
  type VethPair,
} from "../helpers/netns.ts";

const XDP_PASS_C = `#include <linux/bpf.h>
__attribute__((section("xdp"), used)) int tfwn_pass(struct xdp_md *ctx) { return XDP_PASS; }
char _license[] __attribute__((section("license"), used)) = "GPL";
`;

/** What `ip -j link show` says about a link (inside `ns` when given). */
async function ipLink(name: string, ns?: Netns): Promise<{
  ifindex: number;
  link_index?: number;
  address: string;
  mtu: number;
  link_netnsid?: number;
}> {
  const cmd = ["ip", "-j", "link", "show", "dev", name];
  const out = ns ? await nsExec(ns, cmd) : await run(cmd);
  return JSON.parse(out.stdout)[0];
}

/** Builds the trivial XDP object in a temp dir; the caller removes the dir. */
async function buildXdpPass(dir: string): Promise<string> {
  await Deno.writeTextFile(`${dir}/xdp_pass.c`, XDP_PASS_C);
  await run([
    "clang",
    "-O2",
    "-target",
    "bpf",
    "-c",
    `${dir}/xdp_pass.c`,
    "-o",
    `${dir}/xdp_pass.o`,
  ]);
  return `${dir}/xdp_pass.o`;
}

/** The XDP program id bpftool reports on a device. */
async function bpftoolXdpId(dev: string): Promise<number> {
  const out = JSON.parse((await run(["bpftool", "-j", "net", "show", "dev", dev])).stdout);
  return out[0].xdp[0].id;
}

/** A namespace holding the peer of a veth whose host end is here. */
async function withVethIntoNetns(
  fn: (ns: Netns, veth: VethPair, rtnl: RtnetlinkClient) => Promise<void>,
): Promise<void> {
  const ns = await createNetns("tfwn");
  const rtnl = RtnetlinkClient.open();
  try {
    const veth = await createVethPair({ prefix: "tfwn", peerNetns: ns });
    try {
      await fn(ns, veth, rtnl);
    } finally {
      await veth.delete();
    }
  } finally {
    rtnl.close();
    await ns.delete();
  }
}

Deno.test("listLinks and getLink see the host end of a veth, its peer and the peer's nsid", async () => {
  await withVethIntoNetns(async (ns, veth, rtnl) => {
    const hostIp = await ipLink(veth.host);
    const peerIp = await ipLink(veth.peer, ns);

    const listed = rtnl.listLinks().find((l) => l.name === veth.host);
    assert.ok(listed, `listLinks has ${veth.host}`);
    assert.equal(listed.kind, "veth");
    assert.equal(listed.index, hostIp.ifindex);
    assert.equal(listed.mac, hostIp.address);
    assert.equal(listed.mtu, hostIp.mtu);
    assert.equal(listed.up, true);
    assert.equal(listed.linkIndex, peerIp.ifindex, "IFLA_LINK is the peer's ifindex in its netns");
    assert.equal(listed.linkNetnsid, hostIp.link_netnsid);
    assert.deepEqual(listed.xdp, {
      mode: "none",
      progId: 0,
      drvProgId: 0,
      skbProgId: 0,
      hwProgId: 0,
    });

    const byName = rtnl.getLink(veth.host);
    const byIndex = rtnl.getLink(listed.index);
    assert.ok(byName && byIndex);
    assert.deepEqual(withoutOperState(byName), withoutOperState(listed));
    assert.deepEqual(byIndex, byName);

    // The nsid of the peer's namespace, three ways: a process in it, its nsfs file by fd and by path.
    const sleeper = await nsSpawn(ns, ["sleep", "60"]);
    try {
      assert.notEqual(listed.linkNetnsid, undefined);
      assert.ok(listed.linkNetnsid! >= 0);
      assert.equal(rtnl.getNsidByPid(sleeper.pid), listed.linkNetnsid);
    } finally {
      await sleeper.kill();
    }
    const fd = openFd(ns.path);
    try {
      assert.equal(rtnl.getNsidByFd(fd), listed.linkNetnsid);
    } finally {
      closeFd(fd);
    }
    assert.equal(rtnl.getNsidByPath(ns.path), listed.linkNetnsid);

    // The same pair seen from inside the peer's namespace, queried by nsid.
    const inside = rtnl.listLinks({ targetNetnsid: listed.linkNetnsid });
    const peer = inside.find((l) => l.index === listed.linkIndex);
    assert.ok(peer, "the peer is in the target namespace's dump");
    assert.equal(peer.name, veth.peer);
    assert.equal(peer.kind, "veth");
    assert.equal(peer.linkIndex, listed.index);
    assert.equal(peer.mac, peerIp.address);
    assert.ok(inside.some((l) => l.name === "lo"));
    assert.equal(
      rtnl.getLink(veth.peer, { targetNetnsid: listed.linkNetnsid })?.index,
      peerIp.ifindex,
    );
  });
});

/** A fresh veth may go from lowerlayerdown to up (and gain IFF_RUNNING) between two queries. */
function withoutOperState(link: Link): Omit<Link, "operState" | "flags"> {
  const { operState: _o, flags: _f, ...rest } = link;
  return rest;
}

Deno.test("getLink returns null for a missing name or index", () => {
  const rtnl = RtnetlinkClient.open();
  try {
    assert.equal(rtnl.getLink(uniqueName("tfwn")), null);
    assert.equal(rtnl.getLink("tfwn-" + "x".repeat(40)), null, "an alternative-name lookup");
    const maxIndex = Math.max(...rtnl.listLinks().map((l) => l.index));
    assert.equal(rtnl.getLink(maxIndex + 100000), null);
    assert.equal(rtnl.getLink("lo")?.index, 1);
  } finally {
    rtnl.close();
  }
});

Deno.test("a namespace without an nsid gives -1; bad queries throw NetlinkError with the kernel's message", async () => {
  const ns = await createNetns("tfwn");
  const rtnl = RtnetlinkClient.open();
  try {
    assert.equal(rtnl.getNsidByPath(ns.path), -1);
    assert.throws(
      () => rtnl.listLinks({ targetNetnsid: 0x7ffffff0 }),
      (err: unknown) => {
        assert.ok(err instanceof NetlinkError);
        assert.equal(err.code, "EINVAL");
        assert.equal(err.extAckMessage, "Invalid target network namespace id");
        return true;
      },
    );
    assert.throws(
      () => rtnl.getNsidByPath("/etc/hostname"),
      (err: unknown) => err instanceof NetlinkError && err.code === "EINVAL",
    );
    assert.throws(
      () => rtnl.getNsidByPid(0x7ffffff0),
      (err: unknown) => err instanceof NetlinkError && err.code === "ESRCH",
    );
  } finally {
    rtnl.close();
    await ns.delete();
  }
});

Deno.test("xdp fields follow generic and native attachments (ids as bpftool reports)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tfwn-xdp-" });
  try {
    const obj = await buildXdpPass(dir);
    await withVethIntoNetns(async (_ns, veth, rtnl) => {
      await run(["ip", "link", "set", "dev", veth.host, "xdpgeneric", "obj", obj, "sec", "xdp"]);
      const generic = rtnl.getLink(veth.host)!.xdp;
      const genericId = await bpftoolXdpId(veth.host);
      assert.deepEqual(generic, {
        mode: "generic",
        progId: genericId,
        drvProgId: 0,
        skbProgId: genericId,
        hwProgId: 0,
      });
      assert.deepEqual(rtnl.listLinks().find((l) => l.name === veth.host)?.xdp, generic);
      await run(["ip", "link", "set", "dev", veth.host, "xdpgeneric", "off"]);
      assert.equal(rtnl.getLink(veth.host)!.xdp.mode, "none");

      await run(["ip", "link", "set", "dev", veth.host, "xdpdrv", "obj", obj, "sec", "xdp"]);
      const nativeId = await bpftoolXdpId(veth.host);
      assert.deepEqual(rtnl.getLink(veth.host)!.xdp, {
        mode: "native",
        progId: nativeId,
        drvProgId: nativeId,
        skbProgId: 0,
        hwProgId: 0,
      });
      await run(["ip", "link", "set", "dev", veth.host, "xdpdrv", "off"]);
      assert.equal(rtnl.getLink(veth.host)!.xdp.progId, 0);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Resolves once `predicate` holds for an event received so far (or rejects after 5 s). */
function waitFor(events: LinkEvent[], predicate: (e: LinkEvent) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      if (events.some(predicate)) return resolve();
      if (Date.now() - started > 5000) return reject(new Error("expected link event not seen"));
      setTimeout(check, 10);
    };
    check();
  });
}

Deno.test("subscribeLinks reports creation, XDP attach and deletion without blocking, and closes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tfwn-xdp-" });
  const rtnl = RtnetlinkClient.open();
  const events: LinkEvent[] = [];
  const sub = rtnl.subscribeLinks((e) => events.push(e));
  try {
    const obj = await buildXdpPass(dir);
    const named = (name: string, type: "new" | "del") => (e: LinkEvent) =>
      e.type === type && e.link.name === name;
    const veth = await createVethPair({ prefix: "tfwn" });
    try {
      await waitFor(events, named(veth.host, "new"));
      await waitFor(events, named(veth.peer, "new"));
      await run(["ip", "link", "set", "dev", veth.host, "xdpgeneric", "obj", obj, "sec", "xdp"]);
      await waitFor(
        events,
        (e) => e.type === "new" && e.link.name === veth.host && e.link.xdp.mode === "generic",
      );
    } finally {
      await veth.delete();
    }
    await waitFor(events, named(veth.host, "del"));
    await waitFor(events, named(veth.peer, "del"));
    const created = events.find(named(veth.host, "new"));
    assert.ok(created && created.type === "new");
    assert.equal(created.link.kind, "veth");
    assert.ok(!events.some((e) => e.type === "overrun"));
  } finally {
    const started = performance.now();
    await sub.close();
    assert.ok(performance.now() - started < 1000, "close() does not wait for another event");
    rtnl.close();
    await Deno.remove(dir, { recursive: true });
  }
  await sub.done; // resolved, not rejected
});

Deno.test("subscribeLinks reports an overrun when notifications were lost", async () => {
  const rtnl = RtnetlinkClient.open();
  const events: LinkEvent[] = [];
  const sub = rtnl.subscribeLinks((e) => events.push(e), { receiveBufferBytes: 1 });
  const host = uniqueName("tfwn");
  try {
    // Block the event loop while the kernel sends far more than the smallest buffer holds.
    const script =
      `for i in 1 2 3 4 5 6 7 8; do ip link add ${host} type veth && ip link del ${host}; done`;
    const out = new Deno.Command("sh", { args: ["-c", script], stderr: "piped" }).outputSync();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    await waitFor(events, (e) => e.type === "overrun");
  } finally {
    await sub.close();
    rtnl.close();
    await run(["ip", "link", "del", host], { allowFailure: true });
  }
});
