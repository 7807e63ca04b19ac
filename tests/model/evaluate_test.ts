import assert from "node:assert/strict";
import { buildFrame, type FrameSpec } from "../../lib/model/frame.ts";
import { type Decision, evaluate } from "../../lib/model/evaluate.ts";
import type { Direction, Policy } from "../../lib/policy/model/types.ts";
import { makePolicy } from "../helpers/gen.ts";

const policy = makePolicy;

const tcp = (dport: number, extra: Partial<FrameSpec> = {}): Uint8Array =>
  buildFrame({ family: 4, proto: "tcp", src: "10.0.0.1", dst: "192.168.1.1", dport, ...extra });

function decide(p: Policy, frame: Uint8Array, dir: Direction = "ingress"): Decision {
  return evaluate(p, dir, frame);
}

function byRule(d: Decision): string {
  return d.reason === "rule" ? `${d.verdict}:${d.rule}` : `${d.verdict}:${d.reason}`;
}

Deno.test("first match decides; no match → default", () => {
  const p = policy(
    "deny",
    { action: "allow", protocol: "tcp", ports: [80] },
    { action: "deny", protocol: "tcp", ports: [[1, 1000]] },
    { action: "allow", protocol: "tcp" },
  );
  assert.deepEqual(decide(p, tcp(80)), {
    verdict: "allow",
    reason: "rule",
    ruleIndex: 0,
    rule: "r0",
  });
  assert.equal(byRule(decide(p, tcp(81))), "deny:r1");
  assert.equal(byRule(decide(p, tcp(1001))), "allow:r2");
  assert.equal(
    byRule(decide(p, buildFrame({ family: 4, proto: "udp", dport: 80 }))),
    "deny:default",
  );
  assert.deepEqual(decide(policy("allow"), tcp(1)), { verdict: "allow", reason: "default" });
});

Deno.test("direction: ingress, egress, both; the peer is src for ingress, dst for egress", () => {
  const p = policy(
    "allow",
    { action: "deny", direction: "ingress", cidrs: ["10.0.0.0/8"] },
    { action: "deny", direction: "egress", cidrs: ["192.168.0.0/16"], name: "out" },
    { action: "deny", direction: "both", protocol: "udp", name: "udp" },
  );
  const f = tcp(1); // src 10.0.0.1, dst 192.168.1.1
  assert.equal(byRule(decide(p, f, "ingress")), "deny:r0");
  assert.equal(byRule(decide(p, f, "egress")), "deny:out");
  const reversed = tcp(1, { src: "192.168.1.1", dst: "10.0.0.1" });
  assert.equal(byRule(decide(p, reversed, "ingress")), "allow:default");
  assert.equal(byRule(decide(p, reversed, "egress")), "allow:default");
  const udp = buildFrame({ family: 4, proto: "udp", src: "1.1.1.1", dst: "2.2.2.2" });
  assert.equal(byRule(decide(p, udp, "ingress")), "deny:udp");
  assert.equal(byRule(decide(p, udp, "egress")), "deny:udp");
});

Deno.test("protocol classes: any, named, icmp ↔ 1, icmpv6 ↔ 58, others", () => {
  const p = policy(
    "deny",
    { protocol: "icmp", name: "icmp" },
    { protocol: "icmpv6", name: "icmpv6" },
    { protocol: "sctp", name: "sctp" },
    { protocol: "udp", name: "udp" },
  );
  assert.equal(byRule(decide(p, buildFrame({ family: 4, proto: 1 }))), "allow:icmp");
  assert.equal(byRule(decide(p, buildFrame({ family: 6, proto: 1 }))), "allow:icmp", "face value");
  assert.equal(byRule(decide(p, buildFrame({ family: 6, proto: 58 }))), "allow:icmpv6");
  assert.equal(byRule(decide(p, buildFrame({ family: 4, proto: 58 }))), "allow:icmpv6");
  assert.equal(byRule(decide(p, buildFrame({ family: 6, proto: 132 }))), "allow:sctp");
  assert.equal(byRule(decide(p, buildFrame({ family: 4, proto: 17 }))), "allow:udp");
  assert.equal(byRule(decide(p, buildFrame({ family: 4, proto: 6 }))), "deny:default");
  assert.equal(byRule(decide(p, buildFrame({ family: 4, proto: 47 }))), "deny:default");
  const any = policy("deny", { protocol: "any", name: "any" });
  for (const proto of [0, 6, 17, 47, 50, 59, 132, 255]) {
    assert.equal(byRule(decide(any, buildFrame({ family: 4, proto }))), "allow:any", `${proto}`);
  }
});

Deno.test("CIDRs: families never cross, any CIDR of the family may match", () => {
  const p = policy(
    "deny",
    { cidrs: ["fd00::/8"], name: "v6only" },
    { cidrs: ["172.16.0.0/12", "10.0.0.0/8", "fe80::/10"], name: "mixed" },
    { cidrs: ["0.0.0.0/0"], name: "all4", protocol: "udp" },
  );
  assert.equal(byRule(decide(p, tcp(1, { src: "10.9.9.9" }))), "allow:mixed");
  assert.equal(byRule(decide(p, tcp(1, { src: "172.31.255.255" }))), "allow:mixed");
  assert.equal(byRule(decide(p, tcp(1, { src: "172.32.0.0" }))), "deny:default");
  const v6 = (src: string, proto = 6) => buildFrame({ family: 6, proto, src });
  assert.equal(byRule(decide(p, v6("fd12::1"))), "allow:v6only");
  assert.equal(byRule(decide(p, v6("fe80::1"))), "allow:mixed");
  assert.equal(byRule(decide(p, v6("2001:db8::1"))), "deny:default");
  assert.equal(byRule(decide(p, v6("2001:db8::1", 17))), "deny:default", "0.0.0.0/0 is IPv4 only");
  assert.equal(
    byRule(decide(p, buildFrame({ family: 4, proto: 17, src: "8.8.8.8" }))),
    "allow:all4",
  );
  const mapped = policy("deny", { cidrs: ["::ffff:10.0.0.0/104"] });
  assert.equal(byRule(decide(mapped, tcp(1))), "deny:default", "IPv4-mapped IPv6 is IPv6");
});

Deno.test("ports: single ports and ranges, edges", () => {
  const p = policy("deny", { protocol: "tcp", ports: [22, [8000, 8099], 65535] });
  for (
    const [port, want] of [
      [22, "allow:r0"],
      [21, "deny:default"],
      [23, "deny:default"],
      [
        7999,
        "deny:default",
      ],
      [8000, "allow:r0"],
      [8099, "allow:r0"],
      [8100, "deny:default"],
      [65535, "allow:r0"],
      [
        0,
        "deny:default",
      ],
    ] as const
  ) {
    assert.equal(byRule(decide(p, tcp(port))), want, `${port}`);
  }
  // The destination port, not the source port.
  assert.equal(byRule(decide(p, tcp(1, { sport: 22 }))), "deny:default");
});

Deno.test("fragments: a later fragment matches only rules without ports/icmp", () => {
  const p = policy(
    "deny",
    { protocol: "tcp", ports: [80], name: "web", action: "allow" },
    { protocol: "icmp", icmp: { type: 8 }, name: "ping", action: "allow" },
    { protocol: "tcp", name: "tcp-any", action: "deny", cidrs: ["10.0.0.0/8"] },
    { protocol: "any", name: "rest", action: "allow" },
  );
  assert.equal(byRule(decide(p, tcp(80))), "allow:web");
  assert.equal(byRule(decide(p, tcp(80, { moreFragments: true }))), "allow:web", "first fragment");
  assert.equal(byRule(decide(p, tcp(80, { fragOffset: 100 }))), "deny:tcp-any", "later fragment");
  const later6 = buildFrame({ family: 6, proto: 6, dport: 80, fragOffset: 1 });
  assert.equal(byRule(decide(p, later6)), "allow:rest");
  const pingLater = buildFrame({ family: 4, proto: 1, icmpType: 8, fragOffset: 9 });
  assert.equal(byRule(decide(p, pingLater)), "allow:rest");
  assert.equal(byRule(decide(p, buildFrame({ family: 4, proto: 1, icmpType: 8 }))), "allow:ping");
});

Deno.test("icmp: type, type and code", () => {
  const p = policy(
    "deny",
    { protocol: "icmp", icmp: { type: 3, code: 4 }, name: "frag-needed" },
    { protocol: "icmp", icmp: { type: 8 }, name: "echo" },
    { protocol: "icmpv6", icmp: { type: 128 }, name: "echo6" },
  );
  const icmp = (family: 4 | 6, type: number, code: number) =>
    buildFrame({ family, proto: family === 4 ? 1 : 58, icmpType: type, icmpCode: code });
  assert.equal(byRule(decide(p, icmp(4, 3, 4))), "allow:frag-needed");
  assert.equal(byRule(decide(p, icmp(4, 3, 3))), "deny:default");
  assert.equal(byRule(decide(p, icmp(4, 8, 0))), "allow:echo");
  assert.equal(byRule(decide(p, icmp(4, 8, 255))), "allow:echo");
  assert.equal(byRule(decide(p, icmp(4, 0, 0))), "deny:default");
  assert.equal(byRule(decide(p, icmp(6, 128, 7))), "allow:echo6");
  assert.equal(byRule(decide(p, icmp(6, 8, 0))), "deny:default", "ICMPv6 type 8 is not echo");
});

Deno.test("neighbour discovery passes unless a rule of this direction names its type", () => {
  const nd = (type: number, extra: Partial<FrameSpec> = {}) =>
    buildFrame({ family: 6, proto: 58, icmpType: type, ...extra });
  const closed = policy("deny");
  for (let t = 133; t <= 137; t++) {
    assert.deepEqual(decide(closed, nd(t)), { verdict: "allow", reason: "nd" }, `${t}`);
    assert.deepEqual(decide(closed, nd(t), "egress"), { verdict: "allow", reason: "nd" });
  }
  assert.equal(byRule(decide(closed, nd(132))), "deny:default");
  assert.equal(byRule(decide(closed, nd(138))), "deny:default");
  assert.equal(
    byRule(decide(closed, nd(135, { fragOffset: 2 }))),
    "deny:default",
    "later fragment",
  );
  assert.equal(
    byRule(decide(closed, nd(135, { moreFragments: true }))),
    "allow:nd",
    "first fragment",
  );
  // ND in ICMPv6-numbered IPv4 (protocol 58 at face value).
  assert.equal(
    byRule(decide(closed, buildFrame({ family: 4, proto: 58, icmpType: 136 }))),
    "allow:nd",
  );

  const named = policy(
    "deny",
    {
      protocol: "icmpv6",
      icmp: { type: 135 },
      direction: "ingress",
      action: "deny",
      cidrs: ["fd00::/8"],
    },
    { protocol: "icmp", icmp: { type: 136 }, direction: "both", name: "v4-136" },
  );
  // 135 is named for ingress: decided by the rules there (here: the default).
  assert.equal(byRule(decide(named, nd(135))), "deny:default");
  assert.equal(byRule(decide(named, nd(135, { src: "fd00::1" }))), "deny:r0");
  assert.equal(byRule(decide(named, nd(135), "egress")), "allow:nd");
  assert.equal(byRule(decide(named, nd(134))), "allow:nd");
  // An ICMP (v4) rule does not name an ICMPv6 type.
  assert.equal(byRule(decide(named, nd(136))), "allow:nd");
  // A rule with protocol any and icmp names it too.
  const anyNamed = policy("deny", { protocol: "any", icmp: { type: 133 }, action: "deny" });
  assert.equal(byRule(decide(anyNamed, nd(133))), "deny:r0");
});

Deno.test("non-IP passes and malformed drops, whatever the policy", () => {
  const open = policy("allow", { protocol: "any", action: "allow" });
  const closed = policy("deny", { protocol: "any", action: "deny" });
  for (const p of [open, closed]) {
    assert.deepEqual(decide(p, buildFrame({ family: 4, proto: 6, etherType: 0x0806 })), {
      verdict: "allow",
      reason: "nonip",
    });
    assert.deepEqual(decide(p, tcp(80).slice(0, 40)), { verdict: "deny", reason: "malformed" });
    assert.deepEqual(decide(p, new Uint8Array(10)), { verdict: "deny", reason: "malformed" });
  }
});

Deno.test("VLAN tags, IPv4 options and IPv6 extension headers do not change the decision", () => {
  const p = policy(
    "deny",
    { protocol: "tcp", ports: [443], cidrs: ["10.0.0.0/8", "fd00::/8"], name: "https" },
  );
  const variants: Partial<FrameSpec>[] = [
    {},
    { vlans: [{}] },
    { vlans: [{ tpid: 0x88a8 }, { tpid: 0x8100 }] },
    { ipv4Options: [1, 1, 1, 1, 0x44, 8, 5, 0] },
  ];
  for (const v of variants) {
    assert.equal(byRule(decide(p, tcp(443, v))), "allow:https", JSON.stringify(v));
    assert.equal(byRule(decide(p, tcp(444, v))), "deny:default");
  }
  assert.equal(byRule(decide(p, tcp(443, { vlans: [{}, {}, {}] }))), "allow:nonip");
  const six: Partial<FrameSpec> = {
    ipv6Ext: [
      { kind: "hbh" },
      { kind: "routing", size: 40 },
      { kind: "fragment" },
      { kind: "ah" },
      {
        kind: "dstopts",
      },
    ],
  };
  const f6 = buildFrame({ family: 6, proto: 6, src: "fd00::5", dport: 443, vlans: [{}], ...six });
  assert.equal(byRule(decide(p, f6)), "allow:https");
});
