import assert from "node:assert/strict";
import {
  KIND_ANY,
  KIND_EXACT,
  PF_CIDR4,
  PF_CIDR6,
  PF_LPM_PORTS,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_OTHER,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "../../../lib/abi/layout.ts";
import { buildFrame } from "../../../lib/model/frame.ts";
import { parseCidr } from "../../../lib/net/cidr.ts";
import { computeClasses } from "../../../lib/policy/compile/classes.ts";
import { CompileError, compilePolicy } from "../../../lib/policy/compile/compile.ts";
import { evaluateParsed } from "../../../lib/model/evaluate.ts";
import {
  firstCoverSegments,
  forEachPrefix,
  normalizeRanges,
} from "../../../lib/policy/compile/intervals.ts";
import { decideCompiled, lookupCompiled } from "../../../lib/model/lookup.ts";
import { parsePacket } from "../../../lib/model/packet.ts";
import type { Cidr, Policy } from "../../../lib/policy/model/types.ts";
import { largePolicy, makePolicy, randomFrame, Rng } from "../../helpers/gen.ts";

const cidrs = (...t: string[]): Cidr[] => t.map((c) => parseCidr(c));

/** The rules of class `cls`, sorted (anyAddress rules included). */
function classRules(c: ReturnType<typeof computeClasses>, cls: number): number[] {
  const ranges: number[] = [];
  c.memberRanges(cls, ranges);
  const out: number[] = [];
  for (let i = 0; i < ranges.length; i += 2) {
    for (let k = ranges[i]; k < ranges[i + 1]; k++) out.push(c.rules[k]);
  }
  return out.sort((a, b) => a - b);
}

Deno.test("classes: nested and duplicate CIDRs", () => {
  const c = computeClasses(
    {
      cidrs: cidrs("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.0.0/16"),
      rules: [0, 1, 2, 3],
    },
    { cidrs: [], rules: [] },
    [],
    4,
  );
  assert.deepEqual(c.v4.map((e) => `${e.addr.join(".")}/${e.len}`), [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
  ]);
  assert.equal(c.count, 4);
  assert.deepEqual(classRules(c, 0), []);
  assert.deepEqual(classRules(c, c.v4[0].cls), [0]);
  assert.deepEqual(classRules(c, c.v4[1].cls), [0, 1, 3]);
  assert.deepEqual(classRules(c, c.v4[2].cls), [0, 1, 2, 3]);
});

Deno.test("classes: equal sets share an id, across paths and families", () => {
  const c = computeClasses(
    {
      cidrs: cidrs(
        "10.0.0.0/8",
        "11.1.0.0/16",
        "10.1.0.0/16",
        "11.0.0.0/8",
        "12.0.0.0/8",
        "12.3.0.0/16",
      ),
      rules: [0, 0, 1, 1, 2, 2],
    },
    { cidrs: cidrs("fd00::/8"), rules: [2] },
    [5, 7],
    8,
  );
  const cls = Object.fromEntries(c.v4.map((e) => [`${e.addr[0]}.${e.addr[1]}/${e.len}`, e.cls]));
  assert.equal(cls["10.1/16"], cls["11.1/16"], "{0,1} reached by two paths");
  assert.notEqual(cls["10.0/8"], cls["11.0/8"]);
  assert.equal(cls["12.0/8"], cls["12.3/16"], "a rule's CIDR nested in its own");
  assert.equal(c.v6[0].cls, cls["12.0/8"], "same set in the other family");
  assert.equal(c.count, 5); // {}, {0}, {0,1}, {1}, {2}
  assert.deepEqual(classRules(c, cls["11.1/16"]), [0, 1, 5, 7]);
  assert.deepEqual(classRules(c, 0), [5, 7], "class 0 holds the any-address rules");
});

Deno.test("classes: siblings and deep nesting pop the stack correctly", () => {
  const list = cidrs(
    "0.0.0.0/0",
    "10.0.0.0/8",
    "10.0.0.0/9",
    "10.128.0.0/9",
    "10.128.0.0/24",
    "11.0.0.0/8",
    "10.0.0.5/32",
  );
  const c = computeClasses(
    { cidrs: list, rules: [0, 1, 2, 3, 4, 5, 6] },
    { cidrs: [], rules: [] },
    [],
    7,
  );
  const byText = Object.fromEntries(
    c.v4.map((e) => [`${e.addr.join(".")}/${e.len}`, classRules(c, e.cls)]),
  );
  assert.deepEqual(byText, {
    "0.0.0.0/0": [0],
    "10.0.0.0/8": [0, 1],
    "10.0.0.0/9": [0, 1, 2],
    "10.0.0.5/32": [0, 1, 2, 6],
    "10.128.0.0/9": [0, 1, 3],
    "10.128.0.0/24": [0, 1, 3, 4],
    "11.0.0.0/8": [0, 5],
  });
});

Deno.test("intervals: first cover agrees with a brute-force scan", () => {
  const rng = new Rng(3);
  for (let round = 0; round < 300; round++) {
    const flat: number[] = [];
    const owner = new Int32Array(200).fill(-1);
    const rules = rng.int(1, 6);
    for (let r = 0; r < rules; r++) {
      const ranges = Array.from({ length: rng.int(1, 3) }, () => {
        const from = rng.int(0, 190);
        return { from, to: from + rng.int(0, 20) };
      });
      const norm = normalizeRanges(ranges);
      for (let i = 0; i < norm.length; i += 2) {
        flat.push(norm[i], norm[i + 1], r * 3);
        for (let x = norm[i]; x <= norm[i + 1]; x++) if (owner[x] < 0) owner[x] = r * 3;
      }
    }
    const segs = firstCoverSegments(flat);
    const got = new Int32Array(200).fill(-1);
    for (let i = 0; i < segs.length; i += 3) {
      if (i) assert.ok(segs[i] > segs[i - 2], "sorted and disjoint");
      if (i) assert.ok(!(segs[i] === segs[i - 2] + 1 && segs[i + 2] === segs[i - 1]), "merged");
      for (let x = segs[i]; x <= segs[i + 1]; x++) got[x] = segs[i + 2];
    }
    assert.deepEqual(got, owner, JSON.stringify(flat));
  }
  assert.deepEqual(
    normalizeRanges([{ from: 5, to: 9 }, { from: 1, to: 4 }, { from: 20, to: 70000 }]),
    [
      1,
      9,
      20,
      65535,
    ],
  );
});

Deno.test("intervals: prefixes cover exactly, aligned, never shorter than minLen", () => {
  const rng = new Rng(4);
  const cases: [number, number][] = [[0, 65535], [1, 65535], [80, 90], [0, 0], [65535, 65535]];
  for (let i = 0; i < 200; i++) {
    const a = rng.int(0, 65535);
    cases.push([a, Math.min(65535, a + rng.int(0, 5000))]);
  }
  for (const [from, to] of cases) {
    let at = from;
    forEachPrefix(from, to, 1, (v, len) => {
      assert.ok(len >= 1 && len <= 16);
      const size = 1 << (16 - len);
      assert.equal(v, at, "contiguous");
      assert.equal(v % size, 0, "aligned");
      at += size;
    });
    assert.equal(at, to + 1, `${from}-${to}`);
  }
  const got: string[] = [];
  forEachPrefix(80, 90, 1, (v, len) => got.push(`${v}/${len}`));
  assert.deepEqual(got, ["80/13", "88/15", "90/16"]);
});

Deno.test("compile: elementary intervals, first cover, fallback, rules after it", () => {
  const p = makePolicy(
    "deny",
    { protocol: "tcp", ports: [[80, 90]] },
    { protocol: "tcp", ports: [[85, 100]], action: "deny" },
    { protocol: "tcp" },
    { protocol: "tcp", ports: [[1, 1000]], action: "deny" },
  );
  const c = compilePolicy(p);
  assert.equal(c.counterCount, 10);
  const ing = c.dirs[0];
  assert.equal(ing.mode, "hash");
  assert.equal(ing.flags, 0);
  assert.equal(ing.classes, 1);
  assert.equal(ing.exactProtos, 1 << 0);
  assert.equal(ing.anyProtos, 1 << 0);
  const exact = ing.hash.filter((e) => e.kind === KIND_EXACT);
  assert.equal(exact.length, 21);
  for (const e of exact) {
    assert.equal(e.proto, PROTO_TCP);
    assert.equal(e.cls, 0);
    assert.equal(e.rule, e.l4 <= 90 ? 0 : 1, `${e.l4}`);
    assert.ok(e.l4 >= 80 && e.l4 <= 100);
  }
  assert.deepEqual(ing.hash.filter((e) => e.kind === KIND_ANY), [
    { proto: PROTO_TCP, cls: 0, l4: 0, kind: KIND_ANY, rule: 2 },
  ]);
  assert.deepEqual(c.dirs[1].hash, [], "nothing applies to egress");
  assert.equal(c.dirs[1].exactProtos | c.dirs[1].anyProtos, 0);

  const lpm = compilePolicy(p, { forceMode: "lpm" }).dirs[0];
  assert.equal(lpm.mode, "lpm");
  assert.equal(lpm.flags, PF_LPM_PORTS);
  assert.equal(lpm.exactProtos | lpm.anyProtos, 0);
  assert.deepEqual(lpm.lpm.map((e) => `${e.l4}/${e.l4len}:r${e.rule}`), [
    "80/13:r0",
    "88/15:r0",
    "90/16:r0",
    "91/16:r1",
    "92/14:r1",
    "96/14:r1",
    "100/16:r1",
    "0/0:r2",
  ]);
});

Deno.test("compile: interleaved ranges split and merge", () => {
  const segments = (p: Policy) =>
    compilePolicy(p, { forceMode: "lpm" }).dirs[0].lpm.map((e) => [e.l4, e.l4len, e.rule]);
  const merged = compilePolicy(makePolicy(
    "deny",
    { protocol: "udp", ports: [[10, 20]] },
    { protocol: "udp", ports: [[15, 30]] },
    { protocol: "udp", ports: [[18, 25]] },
  ));
  const rulesByPort = new Map(merged.dirs[0].hash.map((e) => [e.l4, e.rule]));
  for (let port = 10; port <= 30; port++) assert.equal(rulesByPort.get(port), port <= 20 ? 0 : 1);
  assert.equal(rulesByPort.size, 21, "rule 2 is fully shadowed");
  const split = segments(makePolicy(
    "deny",
    { protocol: "udp", ports: [[10, 20]] },
    { protocol: "udp", ports: [[5, 30]] },
    { protocol: "udp", ports: [[1, 3], [25, 40]] },
  ));
  const owner = (port: number) =>
    split.find(([v, len]) => port >= v && port < v + (1 << (16 - len)))?.[2];
  for (let port = 0; port <= 45; port++) {
    const want = port >= 1 && port <= 3
      ? 2
      : port >= 5 && port <= 9
      ? 1
      : port >= 10 && port <= 20
      ? 0
      : port >= 21 && port <= 30
      ? 1
      : port >= 31 && port <= 40
      ? 2
      : undefined;
    assert.equal(owner(port), want, `${port}`);
  }
});

Deno.test("compile: a rule without ports first makes later port rules unreachable", () => {
  const c = compilePolicy(makePolicy(
    "deny",
    { protocol: "tcp", action: "deny" },
    { protocol: "tcp", ports: [22] },
    { protocol: "any", name: "rest" },
  ));
  assert.deepEqual(c.dirs[0].hash.map((e) => [e.proto, e.kind, e.rule]), [
    [PROTO_TCP, KIND_ANY, 0],
    [PROTO_UDP, KIND_ANY, 2],
    [PROTO_SCTP, KIND_ANY, 2],
    [PROTO_ICMP, KIND_ANY, 2],
    [PROTO_ICMPV6, KIND_ANY, 2],
    [PROTO_OTHER, KIND_ANY, 2],
  ]);
  assert.equal(c.dirs[0].anyProtos, 0x3f);
  assert.equal(c.dirs[0].exactProtos, 0);
});

Deno.test("compile: ICMP type and type/code keys", () => {
  const c = compilePolicy(makePolicy(
    "deny",
    { protocol: "icmp", icmp: { type: 3, code: 4 } },
    { protocol: "icmp", icmp: { type: 3 }, action: "deny" },
    { protocol: "icmpv6", icmp: { type: 128, code: 0 } },
  ));
  const h = c.dirs[0].hash;
  assert.equal(h.length, 1 + 255 + 1);
  assert.deepEqual(h.find((e) => e.l4 === 0x0304), {
    proto: PROTO_ICMP,
    cls: 0,
    l4: 0x0304,
    kind: KIND_EXACT,
    rule: 0,
  });
  assert.ok(h.filter((e) => e.rule === 1).every((e) => e.l4 >> 8 === 3 && e.l4 !== 0x0304));
  assert.deepEqual(h[h.length - 1], {
    proto: PROTO_ICMPV6,
    cls: 0,
    l4: 0x8000,
    kind: KIND_EXACT,
    rule: 2,
  });
});

Deno.test("compile: rules that can never match produce nothing", () => {
  const c = compilePolicy(makePolicy(
    "deny",
    { protocol: "tcp", icmp: { type: 8 } },
    { protocol: "any", ports: [80], icmp: { type: 8 } },
    { protocol: "icmp", ports: [80], cidrs: ["10.0.0.0/8"] },
  ));
  assert.deepEqual(c.dirs[0].hash, []);
  assert.deepEqual(c.dirs[0].v4, [], "no class entry for a rule that never matches");
});

Deno.test("compile: mode choice (hash unless > 65,536 entries and > 4× the LPM prefixes)", () => {
  const wide = (n: number) =>
    makePolicy(
      "deny",
      ...Array.from({ length: n }, (_, i) => ({
        protocol: "tcp" as const,
        ports: [[1, 65535] as [number, number]],
        cidrs: [`10.${i}.0.0/16`],
      })),
    );
  assert.equal(compilePolicy(wide(1)).dirs[0].mode, "hash", "65,535 entries");
  const two = compilePolicy(wide(2)).dirs[0];
  assert.equal(two.mode, "lpm", "131,070 entries vs 32 prefixes");
  assert.equal(two.flags, PF_CIDR4 | PF_LPM_PORTS);
  assert.equal(two.lpm.length, 32);
  assert.equal(compilePolicy(wide(2), { forceMode: "hash" }).dirs[0].hash.length, 131070);
  // Many single ports: over 65,536 entries, but LPM needs as many.
  const evenPorts = Array.from({ length: 32767 }, (_, i) => 2 + 2 * i);
  const sparse = makePolicy(
    "deny",
    ...["10.0.0.0/8", "11.0.0.0/8", "12.0.0.0/8"].map((c) => ({
      protocol: "udp" as const,
      ports: evenPorts,
      cidrs: [c],
    })),
  );
  const s = compilePolicy(sparse).dirs[0];
  assert.equal(s.mode, "hash");
  assert.equal(s.hash.length, 3 * 32767);
  // Too big for the file's share even in the chosen mode: a clear error, as soon as the rows
  // built so far pass it (the 17th of 40), before the rest are built.
  assert.throws(() => compilePolicy(wide(40), { forceMode: "hash" }), (e: Error) => {
    assert.ok(e instanceof CompileError);
    assert.match(
      e.message,
      /needs at least 1,048,560 rule_hash entries for ingress, more than a policy file may use \(1,000,000/,
    );
    return true;
  });
});

Deno.test("compile: the full L4 range in LPM mode is two /1 prefixes, never the fallback key", () => {
  const p: Policy = makePolicy("deny", { protocol: "tcp", ports: [[0, 65535]] }, {
    protocol: "tcp",
    action: "deny",
  });
  const c = compilePolicy(p, { forceMode: "lpm" });
  assert.deepEqual(c.dirs[0].lpm.map((e) => [e.l4, e.l4len, e.rule]), [[0, 1, 0], [32768, 1, 0], [
    0,
    0,
    1,
  ]]);
  const later = parsePacket(buildFrame({ family: 4, proto: 6, fragOffset: 1 }));
  assert.equal(lookupCompiled(c, "ingress", later), 1);
  assert.equal(
    lookupCompiled(c, "ingress", parsePacket(buildFrame({ family: 4, proto: 6, dport: 0 }))),
    0,
  );
});

Deno.test("compile: flags, ND bits and directions", () => {
  const c = compilePolicy(makePolicy(
    "allow",
    { protocol: "icmpv6", icmp: { type: 135 }, direction: "ingress" },
    { protocol: "icmpv6", icmp: { type: 137, code: 0 }, direction: "both" },
    { protocol: "icmp", icmp: { type: 133 }, direction: "ingress" },
    { protocol: "any", icmp: { type: 134 }, direction: "egress" },
    { protocol: "icmpv6", icmp: { type: 128 }, direction: "both" },
    { protocol: "tcp", cidrs: ["fd00::/8"], direction: "egress" },
    { protocol: "tcp", cidrs: ["10.0.0.0/8"], direction: "ingress" },
  ));
  const [ing, egr] = c.dirs;
  assert.equal(ing.ndNamed, (1 << 2) | (1 << 4));
  assert.equal(egr.ndNamed, (1 << 1) | (1 << 4));
  assert.equal(ing.flags, PF_CIDR4);
  assert.equal(egr.flags, PF_CIDR6);
  assert.equal(ing.v6.length, 0);
  assert.equal(egr.v4.length, 0);
  assert.equal(c.counterCount, 2 * 7 + 2);
  assert.equal(c.defaultAction, "allow");
  // The bits drive the ND bypass exactly like the evaluator.
  const nd = (t: number) => parsePacket(buildFrame({ family: 6, proto: 58, icmpType: t }));
  for (let t = 133; t <= 137; t++) {
    for (const dir of ["ingress", "egress"] as const) {
      assert.deepEqual(
        decideCompiled(c, dir, nd(t)),
        evaluateParsed(c.policy, dir, nd(t)),
        `${dir} ${t}`,
      );
    }
  }
});

Deno.test("compile: an empty policy has only the default", () => {
  const c = compilePolicy({ name: "empty", defaultAction: "deny", rules: [] });
  assert.equal(c.counterCount, 2);
  for (const d of c.dirs) {
    assert.equal(d.classes, 1);
    assert.deepEqual([d.hash, d.lpm, d.v4, d.v6], [[], [], [], []]);
  }
  const tcp = parsePacket(buildFrame({ family: 4, proto: 6 }));
  assert.deepEqual(decideCompiled(c, "ingress", tcp), { verdict: "deny", reason: "default" });
});

Deno.test("compile: 100,000 CIDR+port rules (timing printed, not asserted)", () => {
  const policy = largePolicy(42, 100_000);
  const t0 = performance.now();
  const c = compilePolicy(policy);
  const ms = performance.now() - t0;
  const [i, e] = c.dirs;
  console.log(
    `  100k rules compiled in ${ms.toFixed(0)} ms: ingress ${i.mode} ${i.classes} classes, ` +
      `${i.v4.length}+${i.v6.length} CIDRs, ${i.hash.length + i.lpm.length} L4 entries; ` +
      `egress ${e.classes} classes, ${e.hash.length + e.lpm.length} L4 entries`,
  );
  const rng = new Rng(5);
  for (let n = 0; n < 150; n++) {
    const pkt = parsePacket(randomFrame(rng, policy, { truncateProbability: 0 }).frame);
    for (const dir of ["ingress", "egress"] as const) {
      assert.deepEqual(decideCompiled(c, dir, pkt), evaluateParsed(policy, dir, pkt));
    }
  }
});
