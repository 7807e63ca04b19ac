/**
 * The tc egress hook (lib/datapath/tc.ts, libbpf's bpf_tc_* through FFI) and
 * the ring buffer consumer (lib/datapath/events.ts), against the running
 * kernel, on veths inside namespaces the tests create (prefix `tfwt`).
 */
import assert from "node:assert/strict";
import { Datapath, progInfo, testRun } from "../../lib/datapath/object.ts";
import {
  attachTcEgress,
  clsactHasFilters,
  detachTcEgress,
  TC_HANDLE,
  TC_PRIORITY,
  tcEgressProgram,
} from "../../lib/datapath/tc.ts";
import { decodeDropEvent, EventReader, formatDropEvent } from "../../lib/datapath/events.ts";
import { PolicySlots } from "../../lib/datapath/policy_slots.ts";
import { DIR_INGRESS, encode, EVENT_AUDIT, EventValue } from "../../lib/abi/layout.ts";
import {
  BPF_PROG_TYPE_SCHED_CLS,
  BPF_TC_INGRESS,
  BpfError,
  tcAttach,
} from "../../lib/ffi/libbpf/mod.ts";
import { RtnetlinkClient } from "../../lib/netlink/rtnetlink.ts";
import { TC_PARENT_CLSACT_EGRESS } from "../../lib/netlink/tc.ts";
import { compilePolicy } from "../../lib/policy/compile/compile.ts";
import { buildFrame } from "../../lib/model/frame.ts";
import { createVethPair, type Netns, withNetns } from "../helpers/netns.ts";

async function qdiscs(ns: Netns, dev: string): Promise<string> {
  return (await ns.exec(["tc", "qdisc", "show", "dev", dev])).stdout;
}

Deno.test("tc: the learner is attached to clsact egress and removed with the qdisc it created", async () => {
  const dp = Datapath.load({ maxEntries: { counters: 4096 } });
  const learner = dp.tcLearner();
  const other = dp.tcLearner();
  try {
    const info = progInfo({ fd: learner.fd });
    assert.equal(info.name, "tinyfw_tc_learn");
    assert.equal(info.type, BPF_PROG_TYPE_SCHED_CLS);
    await withNetns(1, async (ns) => {
      const veth = await createVethPair({ hostNetns: ns });
      const ifindex = veth.hostIndex;
      assert.doesNotMatch(await qdiscs(ns, veth.host), /clsact/);

      const att = ns.enter(() => attachTcEgress(ifindex, learner.fd));
      assert.deepEqual(att, {
        ifindex,
        handle: TC_HANDLE,
        priority: TC_PRIORITY,
        progId: learner.id,
        createdQdisc: true,
      });
      assert.match(await qdiscs(ns, veth.host), /clsact/);
      assert.deepEqual(ns.enter(() => tcEgressProgram(ifindex)), {
        progId: learner.id,
        tinyfw: true,
      });
      const filters = ns.enter(() => {
        const rtnl = RtnetlinkClient.open();
        try {
          return rtnl.listTcFilters(ifindex, TC_PARENT_CLSACT_EGRESS);
        } finally {
          rtnl.close();
        }
      });
      const ours = filters.find((f) => f.handle === TC_HANDLE)!;
      assert.equal(ours.kind, "bpf");
      assert.equal(ours.priority, TC_PRIORITY);
      assert.equal(ours.bpfId, learner.id);
      assert.match(ours.bpfName ?? "", /^tinyfw_tc_learn/);

      // A second attach at the same place: EEXIST, unless replacing.
      assert.throws(
        () => ns.enter(() => attachTcEgress(ifindex, other.fd)),
        (e: unknown) => e instanceof BpfError && e.code === "EEXIST",
      );
      const again = ns.enter(() => attachTcEgress(ifindex, other.fd, { replace: true }));
      assert.equal(again.progId, other.id);
      assert.equal(again.createdQdisc, false);

      // Detaching with the wrong program id leaves the filter alone.
      assert.deepEqual(
        ns.enter(() => detachTcEgress(ifindex, { progId: learner.id, createdQdisc: true })),
        { filterRemoved: false, qdiscRemoved: false },
      );
      assert.equal(ns.enter(() => tcEgressProgram(ifindex))?.progId, other.id);
      assert.deepEqual(
        ns.enter(() => detachTcEgress(ifindex, { progId: other.id, createdQdisc: true })),
        { filterRemoved: true, qdiscRemoved: true },
      );
      assert.doesNotMatch(await qdiscs(ns, veth.host), /clsact/);
      assert.equal(ns.enter(() => tcEgressProgram(ifindex)), null);
      // Again: nothing left, no error.
      assert.deepEqual(ns.enter(() => detachTcEgress(ifindex, { createdQdisc: true })), {
        filterRemoved: false,
        qdiscRemoved: false,
      });
    });
  } finally {
    learner.close();
    other.close();
    dp.close();
  }
});

Deno.test("tc: a clsact qdisc that was there before, or that holds other filters, stays", async () => {
  const dp = Datapath.load({ maxEntries: { counters: 4096 } });
  const learner = dp.tcLearner();
  try {
    await withNetns(1, async (ns) => {
      const a = await createVethPair({ hostNetns: ns });
      const b = await createVethPair({ hostNetns: ns });

      // Someone else's qdisc: ours is only the filter.
      await ns.exec(["tc", "qdisc", "add", "dev", a.host, "clsact"]);
      const att = ns.enter(() => attachTcEgress(a.hostIndex, learner.fd));
      assert.equal(att.createdQdisc, false);
      assert.deepEqual(
        ns.enter(() => detachTcEgress(a.hostIndex, { progId: att.progId, createdQdisc: false })),
        { filterRemoved: true, qdiscRemoved: false },
      );
      assert.match(await qdiscs(ns, a.host), /clsact/);
      assert.equal(ns.enter(() => clsactHasFilters(a.hostIndex)), false);

      // Our qdisc, but another filter joined it (on ingress): the qdisc stays, with that filter.
      const att2 = ns.enter(() => attachTcEgress(b.hostIndex, learner.fd));
      assert.equal(att2.createdQdisc, true);
      ns.enter(() =>
        tcAttach({ ifindex: b.hostIndex, attachPoint: BPF_TC_INGRESS }, {
          progFd: learner.fd,
          handle: 1,
          priority: 7,
        })
      );
      assert.deepEqual(
        ns.enter(() => detachTcEgress(b.hostIndex, { progId: att2.progId, createdQdisc: true })),
        { filterRemoved: true, qdiscRemoved: false },
      );
      assert.match(await qdiscs(ns, b.host), /clsact/);
      assert.match(
        (await ns.exec(["tc", "filter", "show", "dev", b.host, "ingress"])).stdout,
        /pref 7 bpf/,
      );
    });
  } finally {
    learner.close();
    dp.close();
  }
});

Deno.test("tc: the learner never drops and leaves the verdict to later filters", () => {
  const dp = Datapath.load({ maxEntries: { counters: 4096 } });
  const learner = dp.tcLearner();
  try {
    for (
      const frame of [
        buildFrame({ family: 4, proto: "tcp", dport: 443, tcpFlags: 0x02 }),
        buildFrame({ family: 6, proto: "udp", dport: 53 }),
        buildFrame({ family: 6, proto: "icmpv6", icmpType: 128 }),
        buildFrame({ family: 4, proto: 47 }),
        buildFrame({ family: 4, proto: "tcp", truncate: 40 }),
        buildFrame({ family: 4, proto: "udp", etherType: 0x0806 }),
      ]
    ) {
      assert.equal(testRun(learner.fd, frame).retval, 0xffffffff, "TC_ACT_UNSPEC");
    }
  } finally {
    learner.close();
    dp.close();
  }
});

Deno.test("events: the reader decodes samples as they arrive and stops on close", async () => {
  const dp = Datapath.load({ maxEntries: { counters: 4096 } });
  const slots = new PolicySlots(dp);
  const prog = dp.instance(1);
  const inst = slots.install(
    compilePolicy({ name: "deny-all", defaultAction: "deny", rules: [] }),
  );
  const seen: string[] = [];
  let wake: (() => void) | null = null;
  const reader = EventReader.open(dp.maps.events, (e) => {
    seen.push(formatDropEvent(e));
    wake?.();
  });
  try {
    slots.configureAttachment(1, inst.slot, DIR_INGRESS);
    const loop = reader.start();
    const arrived = new Promise<void>((resolve) => wake = resolve);
    const frame = buildFrame({
      family: 4,
      proto: "tcp",
      src: "192.0.2.1",
      dst: "198.51.100.1",
      sport: 40000,
      dport: 22,
    });
    assert.equal(testRun(prog.fd, frame).retval, 1);
    await Promise.race([
      arrived,
      new Promise((_, reject) => setTimeout(() => reject(new Error("no sample in 2 s")), 2000)),
    ]);
    assert.equal(seen[0], `drop ingress tcp 192.0.2.1:40000 -> 198.51.100.1:22 (54 bytes)`);
    await reader.close();
    await loop;
  } finally {
    await reader.close();
    slots.remove(inst);
    prog.close();
    dp.close();
  }
});

Deno.test("events: decoding of ICMP echo, IPv6 and audit samples", () => {
  const saddr = new Uint8Array(16);
  saddr.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
  const daddr = new Uint8Array(16);
  daddr.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  const record = encode(EventValue, {
    kind: EVENT_AUDIT,
    attach_id: 5,
    counter: 9,
    bytes: 70,
    family: 6,
    proto: 58,
    dir: 1,
    has_l4: 1,
    sport: 4242,
    dport: 128 << 8,
    saddr,
    daddr,
  });
  const e = decodeDropEvent(record);
  assert.deepEqual({ ...e }, {
    kind: "audit",
    attachId: 5,
    counter: 9,
    direction: "egress",
    bytes: 70,
    family: 6,
    proto: 58,
    protocol: "icmpv6",
    src: "fd00::2",
    dst: "fd00::1",
    icmpType: 128,
    icmpCode: 0,
    echoId: 4242,
  });
  assert.equal(
    formatDropEvent(e),
    "audit egress icmpv6 fd00::2 -> fd00::1 type 128 code 0 id 4242 (70 bytes)",
  );
  assert.throws(() => decodeDropEvent(record.subarray(0, 10)), RangeError);
});
