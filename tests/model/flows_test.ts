/**
 * The reference model's flow table (lib/model/flows.ts) and the stateful
 * options of `evaluate` (reply, learn, audit): DATAPATH.md §7-8 case by case.
 */
import assert from "node:assert/strict";
import { buildFrame, type FrameSpec } from "../../lib/model/frame.ts";
import { evaluate } from "../../lib/model/evaluate.ts";
import { expectedReply, FlowTable, flowTimeoutSec, replyTuple } from "../../lib/model/flows.ts";
import type { Policy } from "../../lib/policy/model/types.ts";

const HOST = "10.0.0.1";
const PEER = "10.0.0.2";

function out(spec: Partial<FrameSpec> & { proto: FrameSpec["proto"] }): Uint8Array {
  return buildFrame({ family: 4, src: HOST, dst: PEER, ...spec });
}

function back(spec: Partial<FrameSpec> & { proto: FrameSpec["proto"] }): Uint8Array {
  return buildFrame({ family: 4, src: PEER, dst: HOST, ...spec });
}

Deno.test("flows: TCP, UDP and SCTP replies are the reverse 5-tuple", () => {
  for (const proto of ["tcp", "udp", "sctp"] as const) {
    const t = new FlowTable();
    const ack = proto === "tcp" ? { tcpFlags: 0x12 } : {};
    assert.equal(t.isReply(back({ proto, sport: 53, dport: 40000, ...ack })), false);
    assert.equal(t.learn(out({ proto, sport: 40000, dport: 53 })), true);
    assert.equal(t.isReply(back({ proto, sport: 53, dport: 40000, ...ack })), true, proto);
    assert.equal(t.isReply(back({ proto, sport: 54, dport: 40000, ...ack })), false);
    assert.equal(t.isReply(back({ proto, sport: 53, dport: 40001, ...ack })), false);
    assert.equal(
      t.isReply(
        buildFrame({
          family: 4,
          proto,
          src: "10.0.0.3",
          dst: HOST,
          sport: 53,
          dport: 40000,
          ...ack,
        }),
      ),
      false,
    );
    // The request's own direction is not a reply.
    assert.equal(t.isReply(out({ proto, sport: 40000, dport: 53, ...ack })), false);
  }
});

Deno.test("flows: a TCP SYN without ACK is never a reply; SYN-ACK, ACK, RST are", () => {
  const t = new FlowTable();
  t.learn(out({ proto: "tcp", sport: 40000, dport: 443 }));
  const reply = (tcpFlags: number) => back({ proto: "tcp", sport: 443, dport: 40000, tcpFlags });
  assert.equal(t.isReply(reply(0x02)), false);
  for (const f of [0x12, 0x10, 0x18, 0x14, 0x04, 0x11, 0x00]) {
    assert.equal(t.isReply(reply(f)), true);
  }
  assert.equal(replyTuple(reply(0x02)), null);
});

Deno.test("flows: ICMP and ICMPv6 echo replies match the request's id; nothing else is learned", () => {
  for (
    const [family, proto, req, rep, a, b] of [
      [4, "icmp", 8, 0, HOST, PEER],
      [6, "icmpv6", 128, 129, "fd00::1", "fd00::2"],
    ] as const
  ) {
    const t = new FlowTable();
    const f = (src: string, dst: string, icmpType: number, icmpId = 7, icmpCode = 0) =>
      buildFrame({ family, proto, src, dst, icmpType, icmpId, icmpCode });
    assert.equal(t.learn(f(a, b, rep)), false, "an echo reply is not learned");
    assert.equal(t.learn(f(a, b, family === 4 ? 3 : 1)), false, "an error is not learned");
    assert.equal(t.isReply(f(b, a, rep)), false);
    assert.equal(t.learn(f(a, b, req)), true);
    assert.deepEqual(expectedReply(f(a, b, req))?.dport, rep << 8);
    assert.equal(t.isReply(f(b, a, rep)), true, proto);
    assert.equal(t.isReply(f(b, a, rep, 8)), false, "another id");
    assert.equal(t.isReply(f(b, a, rep, 7, 1)), false, "code 1");
    assert.equal(t.isReply(f(b, a, req)), false, "a request is no reply");
  }
});

Deno.test("flows: later fragments, malformed, non-IP and other protocols neither learn nor match", () => {
  const t = new FlowTable();
  assert.equal(t.learn(out({ proto: "udp", sport: 1, dport: 2, fragOffset: 5 })), false);
  assert.equal(t.learn(out({ proto: "udp", sport: 1, dport: 2, truncate: 40 })), false);
  assert.equal(t.learn(out({ proto: "udp", etherType: 0x0806 })), false);
  assert.equal(t.learn(out({ proto: 47 })), false);
  assert.equal(t.size, 0);
  // A first fragment has its L4 header: it learns.
  assert.equal(t.learn(out({ proto: "udp", sport: 1, dport: 2, moreFragments: true })), true);
  assert.equal(t.isReply(back({ proto: "udp", sport: 2, dport: 1 })), true);
  assert.equal(t.isReply(back({ proto: "udp", sport: 2, dport: 1, fragOffset: 5 })), false);
});

Deno.test("flows: idle flows time out per protocol; learning and replies refresh them", () => {
  let now = 1000;
  const t = new FlowTable({ now: () => now });
  t.learn(out({ proto: "udp", sport: 40000, dport: 53 }));
  const reply = back({ proto: "udp", sport: 53, dport: 40000 });
  now += flowTimeoutSec(17) - 1;
  assert.equal(t.isReply(reply), true);
  now += flowTimeoutSec(17) - 1; // refreshed by the reply
  assert.equal(t.isReply(reply), true);
  now += flowTimeoutSec(17) + 1;
  assert.equal(t.isReply(reply), false);
  t.learn(out({ proto: "udp", sport: 40000, dport: 53 }));
  assert.equal(t.isReply(reply), true);
  assert.ok(flowTimeoutSec(6) > flowTimeoutSec(17) && flowTimeoutSec(17) > flowTimeoutSec(1));
});

const SERVER: Policy = {
  name: "server",
  defaultAction: "deny",
  rules: [
    {
      name: "web",
      action: "allow",
      direction: "ingress",
      protocol: "tcp",
      ports: [{ from: 8080, to: 8080 }],
    },
    {
      name: "no-dns-out",
      action: "deny",
      direction: "egress",
      protocol: "udp",
      ports: [{ from: 53, to: 53 }],
    },
  ],
};

Deno.test("evaluate: a denied reply passes with reason reply; without a flow table nothing is a reply", () => {
  const flows = new FlowTable();
  flows.learn(out({ proto: "udp", sport: 40000, dport: 5353 }));
  const reply = back({ proto: "udp", sport: 5353, dport: 40000 });
  assert.deepEqual(evaluate(SERVER, "ingress", reply), { verdict: "deny", reason: "default" });
  assert.deepEqual(evaluate(SERVER, "ingress", reply, { flows }), {
    verdict: "allow",
    reason: "reply",
  });
  // An allowed packet stays "rule", reply or not.
  const web = back({ proto: "tcp", sport: 1234, dport: 8080 });
  assert.equal(evaluate(SERVER, "ingress", web, { flows }).reason, "rule");
});

Deno.test("evaluate: learn from what a learning attachment lets through, not from what it drops", () => {
  const flows = new FlowTable();
  const web = back({ proto: "tcp", sport: 1234, dport: 8080 });
  evaluate(SERVER, "ingress", web, { flows, learn: false });
  assert.equal(flows.size, 0);
  evaluate(SERVER, "ingress", web, { flows, learn: true });
  assert.equal(flows.size, 1);
  // The server's answer, on an egress attachment that denies by default: a reply.
  const answer = out({ proto: "tcp", sport: 8080, dport: 1234, tcpFlags: 0x12 });
  assert.equal(evaluate(SERVER, "egress", answer, { flows, learn: true }).reason, "reply");
  // A dropped packet teaches nothing.
  const denied = back({ proto: "udp", sport: 9, dport: 9 });
  assert.equal(evaluate(SERVER, "ingress", denied, { flows, learn: true }).verdict, "deny");
  assert.equal(flows.size, 1);
});

Deno.test("evaluate: audit mode passes what the rules deny, naming the rule, and learns from it", () => {
  const flows = new FlowTable();
  const dns = out({ proto: "udp", sport: 40000, dport: 53 });
  assert.deepEqual(evaluate(SERVER, "egress", dns, { flows, audit: true, learn: true }), {
    verdict: "allow",
    reason: "rule",
    ruleIndex: 1,
    rule: "no-dns-out",
    audited: true,
  });
  // Its reply is a reply, not another audited packet.
  const answer = back({ proto: "udp", sport: 53, dport: 40000 });
  assert.equal(evaluate(SERVER, "ingress", answer, { flows, audit: true }).reason, "reply");
  // Non-IP, ND and malformed frames are not audited: they are decided before the rules.
  const truncated = out({ proto: "udp", truncate: 30 });
  assert.deepEqual(evaluate(SERVER, "ingress", truncated, { audit: true }).verdict, "deny");
});
