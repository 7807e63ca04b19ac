/**
 * Stateful differential test: the flow table, audit mode and drop samples of
 * the real programs (XDP and the tc learner, run in the kernel through
 * BPF_PROG_TEST_RUN) against the reference model (`evaluate` with a
 * `FlowTable`), on seeded sequences of packets in both directions.
 *
 * Three XDP instances share the maps: ingress and egress attachments flagged
 * ATTACH_LEARN (containers mode) and an ingress attachment that does not learn
 * (a host interface); the tc learner is fed what "the host sends". Packets are
 * drawn from small pools of addresses, ports and echo ids so that flows meet:
 * fresh packets, true replies to earlier ones, and spoofed "replies" (one
 * field off, or to flows that never existed). For every packet the verdict
 * and the counter that moved (rule, default, STAT_REPLY, STAT_AUDIT, ...) must
 * agree; after every sequence, the kernel's flow table must hold exactly the
 * model's flows, and the drop samples must be a prefix-consistent subsequence
 * of the packets the model dropped or audited.
 *
 * Reproduce one sequence: TINYFW_STATEFUL_SEED=<seed> deno test -A tests/datapath/stateful_differential_test.ts
 */
import assert from "node:assert/strict";
import { Datapath, sumPerCpu, testRun, u32Key } from "../../lib/datapath/object.ts";
import { BpfError } from "../../lib/ffi/libbpf/mod.ts";
import { type InstalledPolicy, PolicySlots } from "../../lib/datapath/policy_slots.ts";
import {
  ATTACH_LEARN,
  AttachValue,
  decode,
  DIR_EGRESS,
  DIR_INGRESS,
  STAT_AUDIT,
  STAT_MALFORMED,
  STAT_ND,
  STAT_NONIP,
  STAT_REPLY,
} from "../../lib/abi/layout.ts";
import { clearFlows, decodeFlowKey, listFlows } from "../../lib/datapath/flows.ts";
import { type DropEvent, EventReader, samplesLost } from "../../lib/datapath/events.ts";
import { compilePolicy } from "../../lib/policy/compile/compile.ts";
import { type Decision, evaluate } from "../../lib/model/evaluate.ts";
import { flowKey, FlowTable } from "../../lib/model/flows.ts";
import { buildFrame, type FrameSpec } from "../../lib/model/frame.ts";
import { formatIp, parseCidr, parseIp } from "../../lib/net/cidr.ts";
import { parsePacket } from "../../lib/model/packet.ts";
import type {
  Direction,
  Policy,
  Protocol,
  Rule,
  RuleDirection,
} from "../../lib/policy/model/types.ts";
import { formatPolicy, formatSpec, hex, randomFrame, Rng, webOnlyPolicy } from "../helpers/gen.ts";
import { counterOf, REASON_STAT } from "../helpers/expect.ts";
import { EINVAL } from "../../lib/ffi/errno.ts";

const XDP_DROP = 1;
const XDP_PASS = 2;
/** TC_ACT_UNSPEC (-1), as the u32 the test run reports. */
const TC_UNSPEC = 0xffffffff;
const SEQUENCES = 40;
const PACKETS_PER_SEQUENCE = 300;
const MAX_REPORTED = 5;

const V4 = ["10.1.0.1", "10.1.0.2", "192.0.2.9"];
const V6 = ["fd00::1", "fd00::2", "2001:db8::9"];
const PORTS = [53, 80, 443, 8080, 33000, 33001];
const ECHO_IDS = [1, 2, 777];

/** Where a packet is seen. */
type Where = "tc" | "ingress" | "egress" | "host-ingress";

interface Attachment {
  where: Exclude<Where, "tc">;
  attachId: number;
  dir: Direction;
  learn: boolean;
}

const ATTACHMENTS: Attachment[] = [
  { where: "ingress", attachId: 1, dir: "ingress", learn: true },
  { where: "egress", attachId: 2, dir: "egress", learn: true },
  { where: "host-ingress", attachId: 3, dir: "ingress", learn: false },
];

interface Harness {
  dp: Datapath;
  slots: PolicySlots;
  xdp: Map<Where, { fd: number; close(): void }>;
  tc: { fd: number; close(): void };
  events: DropEvent[];
  reader: EventReader;
}

function openHarness(): Harness {
  const dp = Datapath.load();
  const slots = new PolicySlots(dp);
  const xdp = new Map<Where, { fd: number; close(): void }>();
  for (const a of ATTACHMENTS) xdp.set(a.where, dp.instance(a.attachId));
  const tc = dp.tcLearner();
  const events: DropEvent[] = [];
  const reader = EventReader.open(dp.maps.events, (e) => events.push(e));
  return { dp, slots, xdp, tc, events, reader };
}

async function closeHarness(h: Harness): Promise<void> {
  await h.reader.close();
  for (const p of h.xdp.values()) p.close();
  h.tc.close();
  h.dp.close();
}

function statValue(h: Harness, idx: number): bigint {
  return sumPerCpu(h.dp.maps.stats.lookupPerCpu(u32Key(idx)) ?? [])[0] ?? 0n;
}

// ---------------------------------------------------------------------------
// Generators.

function randomPolicy(rng: Rng): Policy {
  const rules: Rule[] = [];
  const n = rng.int(0, 6);
  for (let i = 0; i < n; i++) {
    const protocol = rng.weighted<Protocol>([
      [4, "tcp"],
      [3, "udp"],
      [1, "sctp"],
      [2, "icmp"],
      [2, "icmpv6"],
      [2, "any"],
    ]);
    const rule: Rule = {
      name: `r${i}`,
      action: rng.chance(0.7) ? "allow" : "deny",
      direction: rng.pick<RuleDirection>(["ingress", "egress", "both"]),
      protocol,
    };
    if ((protocol === "tcp" || protocol === "udp" || protocol === "sctp") && rng.chance(0.7)) {
      rule.ports = Array.from({ length: rng.int(1, 2) }, () => {
        const p = rng.pick(PORTS);
        return { from: p, to: p };
      });
    }
    if ((protocol === "icmp" || protocol === "icmpv6") && rng.chance(0.5)) {
      rule.icmp = { type: protocol === "icmp" ? rng.pick([0, 8]) : rng.pick([128, 129]) };
    }
    if (rng.chance(0.3)) {
      const v6 = rng.chance(0.3);
      const addr = rng.pick(v6 ? V6 : V4);
      rule.cidrs = [parseCidr(`${addr}/${v6 ? rng.pick([128, 64]) : rng.pick([32, 24])}`)];
    }
    rules.push(rule);
  }
  return { name: `s${rng.seed}`, defaultAction: rng.chance(0.8) ? "deny" : "allow", rules };
}

const TCP_FLAGS = [0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x00];

function freshSpec(rng: Rng): FrameSpec {
  const family: 4 | 6 = rng.chance(0.65) ? 4 : 6;
  const pool = family === 4 ? V4 : V6;
  const src = rng.pick(pool);
  let dst = rng.pick(pool);
  if (dst === src && rng.chance(0.8)) dst = pool[(pool.indexOf(src) + 1) % pool.length];
  const proto = rng.weighted<number>([
    [30, 6],
    [25, 17],
    [5, 132],
    [10, family === 4 ? 1 : 58],
    [2, family === 4 ? 58 : 1],
    [4, rng.pick([47, 50, 89])],
  ]);
  const spec: FrameSpec = { family, proto, src, dst };
  if (proto === 1 || proto === 58) {
    const echo = proto === 1 ? [8, 0] : [128, 129];
    spec.icmpType = rng.weighted([
      [5, echo[0]],
      [2, echo[1]],
      [1, proto === 1 ? 3 : 1],
      [1, proto === 1 ? 11 : 135],
      [1, rng.int(0, 255)],
    ]);
    spec.icmpCode = rng.chance(0.9) ? 0 : rng.int(1, 3);
    spec.icmpId = rng.pick(ECHO_IDS);
  } else {
    spec.sport = rng.pick(PORTS);
    spec.dport = rng.pick(PORTS);
    if (proto === 6) spec.tcpFlags = rng.pick(TCP_FLAGS);
  }
  return spec;
}

/** A reply to `orig` (often), or a near miss of one (a spoof). */
function replySpec(rng: Rng, orig: FrameSpec): FrameSpec {
  const spec: FrameSpec = { ...orig, src: orig.dst, dst: orig.src, sport: orig.dport };
  spec.dport = orig.sport;
  delete spec.fragOffset;
  delete spec.moreFragments;
  if (orig.proto === 6) spec.tcpFlags = rng.pick([0x12, 0x10, 0x18, 0x14, 0x11, 0x02]);
  if (orig.proto === 1 || orig.proto === 58) {
    const reply = orig.proto === 1 ? 0 : 129;
    spec.icmpType = rng.chance(0.85) ? reply : orig.icmpType;
    spec.icmpCode = rng.chance(0.9) ? 0 : 1;
  }
  if (rng.chance(0.3)) {
    // Spoof: one field off.
    switch (rng.int(0, 3)) {
      case 0:
        spec.sport = rng.pick(PORTS);
        break;
      case 1:
        spec.dport = rng.pick(PORTS);
        break;
      case 2:
        spec.src = rng.pick(orig.family === 4 ? V4 : V6);
        break;
      default:
        spec.icmpId = rng.pick(ECHO_IDS);
    }
  }
  return spec;
}

interface Packet {
  where: Where;
  spec?: FrameSpec;
  frame: Uint8Array;
}

function randomPacket(rng: Rng, policy: Policy, history: FrameSpec[]): Packet {
  const where = rng.weighted<Where>([
    [3, "tc"],
    [3, "ingress"],
    [3, "egress"],
    [2, "host-ingress"],
  ]);
  if (rng.chance(0.08)) {
    // Anything the stateless generator makes: VLANs, extension headers, fragments, truncation.
    const g = randomFrame(rng, policy);
    if (g.frame.length >= 14) return { where, spec: g.spec, frame: g.frame };
  }
  let spec = history.length && rng.chance(0.45)
    ? replySpec(rng, rng.pick(history))
    : freshSpec(rng);
  const fragment = rng.weighted([[18, "none"], [1, "later"], [1, "first"]] as const);
  if (fragment === "later") spec = { ...spec, fragOffset: rng.int(1, 100) };
  if (fragment === "first") spec = { ...spec, moreFragments: true };
  if (rng.chance(0.05)) spec = { ...spec, vlans: [{ vid: 7 }] };
  history.push(spec);
  return { where, spec, frame: buildFrame(spec) };
}

// ---------------------------------------------------------------------------
// The check.

interface Expected {
  packet: Packet;
  decision: Decision;
  attachment: Attachment;
}

function describe(p: Packet): string {
  return `${p.where}: ${p.spec ? formatSpec(p.spec) : "-"}\nframe ${hex(p.frame)}`;
}

const bump = (m: Map<number, bigint>, k: number) => m.set(k, (m.get(k) ?? 0n) + 1n);

/**
 * One seeded sequence: a random policy installed on every attachment, then
 * packets through the real programs and the model side by side. Each check
 * adds what it finds to `problems`.
 */
class Sequence {
  readonly rng: Rng;
  readonly policy: Policy;
  readonly audit: boolean;
  readonly inst: InstalledPolicy;
  readonly problems: string[] = [];
  readonly model = new FlowTable({ now: () => 0 });
  readonly history: FrameSpec[] = [];
  /** The packets a sample is expected for (dropped, or audited), in order. */
  readonly sampled: Expected[] = [];
  readonly #stats = new Map<number, bigint>();
  readonly #counters = new Map<number, bigint>();
  readonly #lostBefore: bigint;

  constructor(readonly h: Harness, readonly seed: number) {
    this.rng = new Rng(seed);
    this.policy = randomPolicy(this.rng);
    this.audit = seed % 4 === 3;
    this.inst = h.slots.install(compilePolicy(this.policy), { plain: seed % 2 === 0 });
    clearFlows(h.dp.maps.flows);
    h.slots.setAudit(this.audit);
    for (const a of ATTACHMENTS) {
      const dir = a.dir === "ingress" ? DIR_INGRESS : DIR_EGRESS;
      h.slots.configureAttachment(a.attachId, this.inst.slot, dir, { learn: a.learn });
    }
    for (const st of [STAT_NONIP, STAT_MALFORMED, STAT_ND, STAT_REPLY, STAT_AUDIT]) {
      this.#stats.set(st, statValue(h, st));
    }
    this.#lostBefore = samplesLost(h.dp);
    h.reader.consume();
    h.events.length = 0;
  }

  get ruleCount(): number {
    return this.policy.rules.length;
  }

  /** A packet through the tc learner: it never decides, and the model learns the same flow. */
  checkTc(p: Packet): void {
    let r: number;
    try {
      r = testRun(this.h.tc.fd, p.frame).retval;
    } catch (e) {
      // The kernel builds no skb from an IP EtherType without an IP header (EINVAL):
      // no such packet is ever sent.
      if (e instanceof BpfError && e.errno === EINVAL && p.frame.length < 54) return;
      throw e;
    }
    this.model.learn(p.frame);
    if (r !== TC_UNSPEC) {
      this.problems.push(`seed ${this.seed}: tc learner returned ${r}\n${describe(p)}`);
    }
  }

  /** A packet through an XDP attachment: same verdict as the model, counted where it says. */
  checkXdp(p: Packet, i: number, tally: Map<string, number>): void {
    const a = ATTACHMENTS.find((x) => x.where === p.where)!;
    const dir = a.dir === "ingress" ? DIR_INGRESS : DIR_EGRESS;
    const want = evaluate(this.policy, a.dir, p.frame, {
      flows: this.model,
      learn: a.learn,
      audit: this.audit,
    });
    const kind = want.audited ? "audited" : `${want.verdict} by ${want.reason}`;
    tally.set(kind, (tally.get(kind) ?? 0) + 1);
    const got = testRun(this.h.xdp.get(p.where)!.fd, p.frame).retval;
    const wantRet = want.verdict === "deny" ? XDP_DROP : XDP_PASS;
    const { what, missed } = this.#count(want, dir);
    const byRules = REASON_STAT[want.reason] === undefined;
    if (byRules && (want.verdict === "deny" || want.audited)) {
      this.sampled.push({ packet: p, decision: want, attachment: a });
    }
    if (got === wantRet && !missed) return;
    this.problems.push(
      `seed ${this.seed}${this.audit ? " (audit)" : ""}, packet ${i}: expected ${want.verdict} ` +
        `by ${what}${want.audited ? " (audited)" : ""}, kernel returned ${got}` +
        (missed ? ` and ${missed} did not count it` : "") + `\n${describe(p)}\n` +
        formatPolicy(this.policy),
    );
    // Start the expectations afresh from what the kernel counted.
    for (const st of this.#stats.keys()) this.#stats.set(st, statValue(this.h, st));
    for (const k of this.#counters.keys()) this.#counters.set(k, this.h.slots.readCounter(k)[0]);
  }

  /** Expects `want` counted where the model says; returns what, and what failed to count it. */
  #count(want: Decision, dir: number): { what: string; missed: string | null } {
    const stat = REASON_STAT[want.reason];
    if (stat !== undefined) {
      bump(this.#stats, stat);
      const what = `stats[${want.reason}]`;
      return { what, missed: statValue(this.h, stat) !== this.#stats.get(stat) ? what : null };
    }
    const idx = counterOf(this.inst.counterBase, this.ruleCount, want, dir);
    bump(this.#counters, idx);
    const what = want.reason === "rule" ? `rule #${want.ruleIndex}` : "default";
    let missed = this.h.slots.readCounter(idx)[0] !== this.#counters.get(idx)
      ? `counter of ${what}`
      : null;
    if (want.audited) {
      bump(this.#stats, STAT_AUDIT);
      if (statValue(this.h, STAT_AUDIT) !== this.#stats.get(STAT_AUDIT)) missed = "stats[audit]";
    }
    return { what, missed };
  }

  /** The kernel's flow table holds the model's flows. */
  checkFlows(): void {
    const kernel = listFlows(this.h.dp.maps.flows).map((f) => flowKey(f.reply)).sort();
    const want = this.model.keys().sort();
    if (JSON.stringify(kernel) === JSON.stringify(want)) return;
    const missing = want.filter((k) => !kernel.includes(k));
    const extra = kernel.filter((k) => !want.includes(k));
    this.problems.push(
      `seed ${this.seed}: flow tables differ; missing in the kernel: ${
        missing.join(", ") || "-"
      }; ` +
        `not in the model: ${extra.join(", ") || "-"}`,
    );
  }

  /** Every dropped or audited packet was either sampled (in order) or counted lost. */
  checkSamples(): void {
    const h = this.h;
    h.reader.consume();
    const lost = samplesLost(h.dp) - this.#lostBefore;
    if (BigInt(h.events.length) + lost !== BigInt(this.sampled.length)) {
      this.problems.push(
        `seed ${this.seed}: ${this.sampled.length} drops/audits, but ${h.events.length} samples ` +
          `and ${lost} counted lost`,
      );
    }
    let j = 0;
    for (const e of h.events) {
      while (j < this.sampled.length && !this.#sameEvent(e, this.sampled[j])) j++;
      if (j === this.sampled.length) {
        this.problems.push(
          `seed ${this.seed}: sample ${JSON.stringify(e)} matches no dropped packet`,
        );
        return;
      }
      j++;
    }
  }

  #sameEvent(e: DropEvent, x: Expected): boolean {
    const pkt = parsePacket(x.packet.frame);
    if (pkt.kind !== "ip") return false;
    const d = x.decision;
    const dir = x.attachment.dir === "ingress" ? 0 : 1;
    const hasPorts = pkt.proto === 6 || pkt.proto === 17 || pkt.proto === 132;
    return e.kind === (d.audited ? "audit" : "drop") &&
      e.attachId === x.attachment.attachId &&
      e.direction === x.attachment.dir &&
      e.counter === counterOf(this.inst.counterBase, this.ruleCount, d, dir) &&
      e.bytes === x.packet.frame.length &&
      e.family === pkt.family &&
      e.proto === pkt.proto &&
      e.src === formatIp(pkt.src) &&
      e.dst === formatIp(pkt.dst) &&
      e.sport === (hasPorts ? pkt.sport : undefined) &&
      e.dport === (hasPorts ? pkt.l4 : undefined) &&
      e.icmpType === (hasPorts ? undefined : pkt.icmpType) &&
      e.echoId === pkt.echoId;
  }

  close(): void {
    this.h.slots.setAudit(false);
    this.h.slots.remove(this.inst);
  }
}

/** Runs one seeded sequence; returns the problems found. */
function checkSequence(
  h: Harness,
  seed: number,
  tally: Map<string, number>,
): { problems: string[]; packets: number } {
  const sq = new Sequence(h, seed);
  let packets = 0;
  try {
    for (let i = 0; i < PACKETS_PER_SEQUENCE && sq.problems.length < MAX_REPORTED; i++) {
      const p = randomPacket(sq.rng, sq.policy, sq.history);
      packets++;
      if (p.where === "tc") sq.checkTc(p);
      else sq.checkXdp(p, i, tally);
    }
    if (sq.problems.length === 0) sq.checkFlows();
    if (sq.problems.length === 0) sq.checkSamples();
  } finally {
    sq.close();
  }
  return { problems: sq.problems, packets };
}

Deno.test("stateful differential: flows, replies, audit and samples agree with the model", async () => {
  const only = Deno.env.get("TINYFW_STATEFUL_SEED");
  const seeds = only ? [Number(only)] : Array.from({ length: SEQUENCES }, (_, i) => 5000 + i);
  const h = openHarness();
  const problems: string[] = [];
  const tally = new Map<string, number>();
  let packets = 0;
  try {
    for (const seed of seeds) {
      const r = checkSequence(h, seed, tally);
      problems.push(...r.problems);
      packets += r.packets;
      if (problems.length >= MAX_REPORTED) break;
    }
  } finally {
    await closeHarness(h);
  }
  const outcomes = [...tally].sort().map(([k, v]) => `${k} ${v}`).join(", ");
  console.log(`stateful differential: ${seeds.length} sequences, ${packets} packets (${outcomes})`);
  assert.deepEqual(problems, [], problems.join("\n\n"));
  if (!only) {
    for (const k of ["allow by reply", "deny by default", "audited", "allow by rule"]) {
      assert.ok((tally.get(k) ?? 0) >= 100, `too few packets: ${k}`);
    }
  }
});

// ---------------------------------------------------------------------------
// Hand-written cases.

const SERVER = "10.1.0.1";
const CLIENT = "10.1.0.2";

/** deny by default, allow ingress tcp 8080: the e2e policy. */
function serverPolicy(): Policy {
  return webOnlyPolicy("server");
}

Deno.test("stateful: the host's own exchanges get their replies, spoofed replies are dropped", async () => {
  const h = openHarness();
  const inst = h.slots.install(compilePolicy(serverPolicy()));
  try {
    clearFlows(h.dp.maps.flows);
    h.slots.configureAttachment(3, inst.slot, DIR_INGRESS);
    const xdp = h.xdp.get("host-ingress")!.fd;
    const run = (spec: FrameSpec) => testRun(xdp, buildFrame(spec)).retval;
    const send = (spec: FrameSpec) => testRun(h.tc.fd, buildFrame(spec)).retval;
    for (
      const [family, server, client] of [[4, SERVER, CLIENT], [6, "fd00::1", "fd00::2"]] as const
    ) {
      const tcp = { family, proto: "tcp", src: client, dst: server, sport: 9000, dport: 41000 };
      // Before the host says anything: a SYN-ACK "reply" is dropped.
      assert.equal(run({ ...tcp, tcpFlags: 0x12 }), XDP_DROP);
      assert.equal(
        send({ ...tcp, src: server, dst: client, sport: 41000, dport: 9000 }),
        TC_UNSPEC,
      );
      assert.equal(run({ ...tcp, tcpFlags: 0x12 }), XDP_PASS, `IPv${family} SYN-ACK`);
      assert.equal(run({ ...tcp, tcpFlags: 0x10 }), XDP_PASS, `IPv${family} ACK`);
      // Never a reply: a SYN on the same 5-tuple; one port off; another peer.
      assert.equal(run({ ...tcp, tcpFlags: 0x02 }), XDP_DROP, "a SYN is never a reply");
      assert.equal(run({ ...tcp, sport: 9001, tcpFlags: 0x12 }), XDP_DROP);
      assert.equal(run({ ...tcp, dport: 41001, tcpFlags: 0x12 }), XDP_DROP);
      // UDP.
      const udp = { family, proto: "udp", src: client, dst: server, sport: 53, dport: 41002 };
      assert.equal(run(udp), XDP_DROP);
      send({ ...udp, src: server, dst: client, sport: 41002, dport: 53 });
      assert.equal(run(udp), XDP_PASS);
      assert.equal(run({ ...udp, sport: 54 }), XDP_DROP);
      // Echo: the reply with the request's id passes; another id, or a request, does not.
      const proto = family === 4 ? "icmp" : "icmpv6";
      const [request, reply] = family === 4 ? [8, 0] : [128, 129];
      const echo = { family, proto, src: client, dst: server, icmpType: reply, icmpId: 4242 };
      assert.equal(run(echo), XDP_DROP);
      send({ ...echo, src: server, dst: client, icmpType: request });
      assert.equal(run(echo), XDP_PASS);
      assert.equal(run({ ...echo, icmpId: 4243 }), XDP_DROP);
      assert.equal(run({ ...echo, icmpType: request }), XDP_DROP);
      // A later fragment never matches a flow.
      assert.equal(run({ ...udp, fragOffset: 10 }), XDP_DROP);
    }
    // Replies were counted as such.
    assert.ok(statValue(h, STAT_REPLY) >= 8n);
  } finally {
    h.slots.remove(inst);
    await closeHarness(h);
  }
});

Deno.test("stateful: a flow idle longer than its timeout no longer lets replies in", async () => {
  const h = openHarness();
  const inst = h.slots.install(compilePolicy(serverPolicy()));
  try {
    clearFlows(h.dp.maps.flows);
    h.slots.configureAttachment(3, inst.slot, DIR_INGRESS);
    const xdp = h.xdp.get("host-ingress")!.fd;
    const udp: FrameSpec = {
      family: 4,
      proto: "udp",
      src: CLIENT,
      dst: SERVER,
      sport: 53,
      dport: 41002,
    };
    testRun(h.tc.fd, buildFrame({ ...udp, src: SERVER, dst: CLIENT, sport: 41002, dport: 53 }));
    assert.equal(testRun(xdp, buildFrame(udp)).retval, XDP_PASS);
    // Age the entry: its timestamp 200 s earlier than the kernel's own.
    const [flow] = listFlows(h.dp.maps.flows);
    const key = [...h.dp.maps.flows.keys()][0];
    assert.equal(decodeFlowKey(key).sport, 53);
    if (flow.seenNs < 200_000_000_000n) {
      console.log("uptime under 200 s: skipping the expiry check");
      return;
    }
    const old = new Uint8Array(8);
    new DataView(old.buffer).setBigUint64(0, flow.seenNs - 200_000_000_000n, true);
    h.dp.maps.flows.update(key, old);
    assert.equal(testRun(xdp, buildFrame(udp)).retval, XDP_DROP, "a reply to an expired flow");
    // Sending again revives the flow.
    testRun(h.tc.fd, buildFrame({ ...udp, src: SERVER, dst: CLIENT, sport: 41002, dport: 53 }));
    assert.equal(testRun(xdp, buildFrame(udp)).retval, XDP_PASS);
  } finally {
    h.slots.remove(inst);
    await closeHarness(h);
  }
});

Deno.test("stateful: audit mode passes what the rules deny, counts it on the rule and in STAT_AUDIT", async () => {
  const h = openHarness();
  const policy = serverPolicy();
  policy.rules.push({
    name: "no-telnet",
    action: "deny",
    direction: "ingress",
    protocol: "tcp",
    ports: [{ from: 23, to: 23 }],
  });
  const inst = h.slots.install(compilePolicy(policy));
  try {
    clearFlows(h.dp.maps.flows);
    h.slots.configureAttachment(3, inst.slot, DIR_INGRESS);
    const xdp = h.xdp.get("host-ingress")!.fd;
    const telnet = buildFrame({ family: 4, proto: "tcp", src: CLIENT, dst: SERVER, dport: 23 });
    const other = buildFrame({ family: 6, proto: "udp", src: "fd00::2", dst: "fd00::1", dport: 9 });
    const genBefore = h.slots.generation();
    assert.equal(testRun(xdp, telnet).retval, XDP_DROP);
    h.slots.setAudit(true);
    assert.equal(h.slots.audit(), true);
    assert.equal(h.slots.generation(), genBefore, "setAudit changed the generation");
    const audited0 = statValue(h, STAT_AUDIT);
    const rule0 = h.slots.readCounter(inst.counterBase + 2 * 1 + DIR_INGRESS)[0];
    const default0 = h.slots.readCounter(inst.counterBase + 2 * 2 + DIR_INGRESS)[0];
    for (let i = 0; i < 5; i++) assert.equal(testRun(xdp, telnet).retval, XDP_PASS);
    for (let i = 0; i < 3; i++) assert.equal(testRun(xdp, other).retval, XDP_PASS);
    assert.equal(statValue(h, STAT_AUDIT) - audited0, 8n);
    assert.equal(h.slots.readCounter(inst.counterBase + 2 + DIR_INGRESS)[0] - rule0, 5n);
    assert.equal(h.slots.readCounter(inst.counterBase + 4 + DIR_INGRESS)[0] - default0, 3n);
    // A reload keeps audit mode on, and an attachment's ATTACH_LEARN.
    h.slots.configureAttachment(1, inst.slot, DIR_INGRESS, { learn: true });
    h.slots.switchAttachments([
      { attachId: 3, slot: inst.slot, dir: DIR_INGRESS },
      { attachId: 1, slot: inst.slot, dir: DIR_INGRESS },
    ]);
    assert.equal(h.slots.audit(), true, "switchAttachments turned audit off");
    const flagsOf = (id: number) => decode(AttachValue, h.dp.maps.attach.lookup(u32Key(id))!).flags;
    assert.equal(flagsOf(1), ATTACH_LEARN);
    assert.equal(flagsOf(3), 0);
    assert.equal(testRun(xdp, telnet).retval, XDP_PASS);
    h.slots.setAudit(false);
    assert.equal(testRun(xdp, telnet).retval, XDP_DROP);
    // The samples say what happened.
    h.events.length = 0;
    h.reader.consume();
  } finally {
    h.slots.setAudit(false);
    h.slots.remove(inst);
    await closeHarness(h);
  }
});

Deno.test("stateful: drop samples carry the 5-tuple and are limited per CPU and second", async () => {
  const h = openHarness();
  const inst = h.slots.install(compilePolicy(serverPolicy()));
  try {
    h.slots.configureAttachment(3, inst.slot, DIR_INGRESS);
    const xdp = h.xdp.get("host-ingress")!.fd;
    h.reader.consume();
    h.events.length = 0;
    // Wait for a fresh one-second window on whatever CPU runs this.
    await new Promise((r) => setTimeout(r, 1100));
    const lost0 = samplesLost(h.dp);
    const frame = buildFrame({
      family: 6,
      proto: "udp",
      src: "fd00::2",
      dst: "fd00::1",
      sport: 5353,
      dport: 9999,
    });
    const N = 200;
    const t0 = performance.now();
    for (let i = 0; i < N; i++) assert.equal(testRun(xdp, frame).retval, XDP_DROP);
    const elapsed = performance.now() - t0;
    h.reader.consume();
    const lost = samplesLost(h.dp) - lost0;
    assert.equal(BigInt(h.events.length) + lost, BigInt(N));
    assert.ok(h.events.length >= 20, `${h.events.length} samples`);
    if (elapsed < 900) {
      const cpus = navigator.hardwareConcurrency;
      assert.ok(h.events.length <= 20 * cpus, `${h.events.length} samples in ${elapsed} ms`);
    }
    const e = h.events[0];
    assert.deepEqual(
      { ...e },
      {
        kind: "drop",
        attachId: 3,
        counter: inst.counterBase + 2 + DIR_INGRESS,
        direction: "ingress",
        bytes: frame.length,
        family: 6,
        proto: 17,
        protocol: "udp",
        src: "fd00::2",
        dst: "fd00::1",
        sport: 5353,
        dport: 9999,
      },
    );
    assert.equal(parseIp(e.src).family, 6);
  } finally {
    h.slots.remove(inst);
    await closeHarness(h);
  }
});
