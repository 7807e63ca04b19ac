/**
 * `explain` (the real XDP program on a built packet) agrees with the reference
 * evaluator on generated policies and questions: verdict, deciding rule, reason.
 */
import assert from "node:assert/strict";
import {
  explainedPacket,
  Explainer,
  type ExplainQuery,
  formatExplanation,
} from "../../lib/commands/explain.ts";
import { compilePolicy } from "../../lib/policy/compile/compile.ts";
import { evaluate } from "../../lib/model/evaluate.ts";
import { buildFrame, type FrameSpec } from "../../lib/model/frame.ts";
import { formatIp } from "../../lib/net/cidr.ts";
import type { Policy } from "../../lib/policy/model/types.ts";
import { formatPolicy, randomPolicy, Rng } from "../helpers/gen.ts";

const POLICIES = 50;
const QUESTIONS = 110;
const PROTOS = ["tcp", "udp", "sctp", "icmp", "icmpv6"] as const;

/** An address inside `cidr` (or anywhere of `family`), as text. */
function addressIn(rng: Rng, family: 4 | 6, cidr?: { addr: Uint8Array; len: number }): string {
  const a = rng.bytes(family === 4 ? 4 : 16);
  if (cidr) {
    for (let bit = 0; bit < cidr.len; bit++) {
      const byte = bit >> 3, mask = 0x80 >> (bit & 7);
      a[byte] = (a[byte] & ~mask) | (cidr.addr[byte] & mask);
    }
  }
  return formatIp(a);
}

/** A question aimed at the policy's rules most of the time. */
function randomQuery(rng: Rng, policy: Policy): ExplainQuery {
  const rule = rng.chance(0.8) ? rng.pick(policy.rules) : undefined;
  const proto = rule && rule.protocol !== "any" ? rule.protocol : rng.pick([...PROTOS]);
  const cidr = rule?.cidrs?.length && rng.chance(0.8) ? rng.pick(rule.cidrs) : undefined;
  const family: 4 | 6 = cidr?.family ??
    (proto === "icmpv6" ? 6 : proto === "icmp" ? 4 : rng.pick([4, 6]));
  const direction = rng.pick(["ingress", "egress"] as const);
  const peer = addressIn(rng, family, cidr);
  const other = addressIn(rng, family);
  const q: ExplainQuery = {
    proto,
    family,
    direction,
    src: direction === "ingress" ? peer : other,
    dst: direction === "ingress" ? other : peer,
  };
  if (proto === "icmp" || proto === "icmpv6") {
    const icmp = rule?.icmp && rng.chance(0.8) ? rule.icmp : undefined;
    return { ...q, icmpType: icmp?.type ?? rng.int(0, 255), icmpCode: icmp?.code ?? rng.int(0, 3) };
  }
  const range = rule?.ports?.length ? rng.pick(rule.ports) : undefined;
  const dport = range && rng.chance(0.85)
    ? rng.pick([range.from, range.to, rng.int(range.from, range.to), Math.min(65535, range.to + 1)])
    : rng.int(1, 65535);
  return { ...q, sport: rng.int(1024, 65535), dport };
}

Deno.test("explain: the kernel's answer equals the reference evaluator's on 5,500 questions", () => {
  const explainer = Explainer.open(1 << 12);
  const problems: string[] = [];
  let asked = 0;
  try {
    for (let seed = 5000; seed < 5000 + POLICIES; seed++) {
      const rng = new Rng(seed);
      const policy = randomPolicy(rng, { maxRules: 20 });
      const compiled = compilePolicy(policy);
      for (let i = 0; i < QUESTIONS; i++) {
        const q = randomQuery(rng, policy);
        const got = explainer.explain(q, policy, compiled);
        const frame = buildFrame({ ...explainedPacket(q) } as FrameSpec);
        const want = evaluate(policy, q.direction, frame);
        const wantReason = want.reason === "nd" ? "neighbour-discovery" : want.reason;
        const wantRule = want.reason === "rule" ? policy.rules[want.ruleIndex!].name : null;
        asked++;
        if (got.verdict !== want.verdict || got.reason !== wantReason || got.rule !== wantRule) {
          problems.push(
            `seed ${seed}: ${
              JSON.stringify(q)
            }\n  explain: ${got.verdict} ${got.reason} ${got.rule}` +
              `\n  reference: ${want.verdict} ${wantReason} ${wantRule}\n${formatPolicy(policy)}`,
          );
          if (problems.length >= 5) break;
        }
      }
      if (problems.length >= 5) break;
    }
  } finally {
    explainer.close();
  }
  assert.deepEqual(problems, [], problems.join("\n\n"));
  assert.ok(asked >= 5000, `only ${asked} questions`);
});

Deno.test("explain: addresses with ports are written as endpoints, IPv6 in brackets", () => {
  const base = {
    verdict: "allow" as const,
    policy: "p",
    rule: null,
    reason: "default" as const,
    direction: "egress" as const,
  };
  const v6 = formatExplanation({
    ...base,
    packet: { family: 6, proto: "udp", src: "fd00::1", dst: "fd00::a", sport: 40000, dport: 53 },
  });
  assert.match(v6.split("\n")[0], /^ALLOW {2}udp \[fd00::1\]:40000 -> \[fd00::a\]:53 \(egress\)$/);
  const v4 = formatExplanation({
    ...base,
    packet: { family: 4, proto: "tcp", src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 80 },
  });
  assert.match(v4.split("\n")[0], /^ALLOW {2}tcp 10\.0\.0\.1:1 -> 10\.0\.0\.2:80 \(egress\)$/);
});
