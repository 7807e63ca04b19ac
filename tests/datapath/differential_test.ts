/**
 * Differential test of the data plane: the real XDP program, run in the kernel
 * through BPF_PROG_TEST_RUN, against the TypeScript reference evaluator, on
 * seeded random policies and frames. Verdict and deciding rule (its counter, or
 * the stats slot for non-rule outcomes) must agree for every packet.
 *
 * Reproduce one policy: TINYFW_DIFF_SEED=<seed> deno test -A tests/datapath/differential_test.ts
 */
import assert from "node:assert/strict";
import { Datapath, sumPerCpu, testRun, u32Key } from "../../lib/datapath/object.ts";
import { PolicySlots } from "../../lib/datapath/policy_slots.ts";
import {
  DIR_EGRESS,
  DIR_INGRESS,
  STAT_MALFORMED,
  STAT_ND,
  STAT_NONIP,
} from "../../lib/abi/layout.ts";
import { compilePolicy } from "../../lib/policy/compile/compile.ts";
import { evaluate } from "../../lib/model/evaluate.ts";
import type { Direction, Policy } from "../../lib/policy/model/types.ts";
import { defaultPolicy } from "../../lib/policy/model/default.ts";
import { formatPolicy, formatSpec, hex, randomFrames, randomPolicy, Rng } from "../helpers/gen.ts";
import { counterOf, REASON_STAT } from "../helpers/expect.ts";

const XDP_DROP = 1;
const XDP_PASS = 2;
const POLICIES = 60;
const FRAMES_PER_POLICY = 400;
const MAX_REPORTED = 5;
const ETH_HLEN = 14;

const DIRS: [Direction, number][] = [["ingress", DIR_INGRESS], ["egress", DIR_EGRESS]];

interface Harness {
  dp: Datapath;
  slots: PolicySlots;
  /** Program instances reading attach ids 1 (ingress) and 2 (egress). */
  progs: { fd: number; close(): void }[];
}

function openHarness(): Harness {
  const dp = Datapath.load();
  const slots = new PolicySlots(dp);
  const progs = DIRS.map(([, dir]) => dp.instance(1 + dir));
  return { dp, slots, progs };
}

function closeHarness(h: Harness): void {
  for (const p of h.progs) p.close();
  h.dp.close();
}

function statValue(h: Harness, idx: number): bigint {
  return sumPerCpu(h.dp.maps.stats.lookupPerCpu(u32Key(idx)) ?? [])[0] ?? 0n;
}

/**
 * Runs `frames` through both directions of `policy` and returns a description
 * of every disagreement (at most MAX_REPORTED, plus a count).
 */
function checkPolicy(
  h: Harness,
  policy: Policy,
  frames: { frame: Uint8Array; spec?: unknown }[],
  opts: { forceMode?: "hash" | "lpm"; plain?: boolean; seed: number },
): string[] {
  const compiled = compilePolicy(policy, { forceMode: opts.forceMode });
  const inst = h.slots.install(compiled, { plain: opts.plain });
  const n = policy.rules.length;
  const problems: string[] = [];
  try {
    for (const [, dir] of DIRS) h.slots.configureAttachment(1 + dir, inst.slot, dir);
    const expectedCounts = new Map<number, bigint>();
    const statBase = new Map<number, bigint>();
    for (const s of [STAT_NONIP, STAT_MALFORMED, STAT_ND]) {
      statBase.set(s, statValue(h, s));
    }
    const statExpected = new Map<number, bigint>(statBase);
    const bump = (m: Map<number, bigint>, k: number) => m.set(k, (m.get(k) ?? 0n) + 1n);

    for (const { frame, spec } of frames) {
      // XDP never sees a frame shorter than an Ethernet header, and
      // BPF_PROG_TEST_RUN refuses one (EINVAL); the unit tests cover them.
      if (frame.length < ETH_HLEN) continue;
      for (const [dirName, dir] of DIRS) {
        const want = evaluate(policy, dirName, frame);
        const got = testRun(h.progs[dir].fd, frame).retval;
        const wantRet = want.verdict === "deny" ? XDP_DROP : XDP_PASS;
        let where: string | null = null;
        let what: string;
        const stat = REASON_STAT[want.reason];
        if (stat !== undefined) {
          bump(statExpected, stat);
          what = `stats[${want.reason}]`;
          if (statValue(h, stat) !== statExpected.get(stat)) where = what;
        } else {
          const idx = counterOf(inst.counterBase, n, want, dir);
          bump(expectedCounts, idx);
          what = want.reason === "rule" ? `rule #${want.ruleIndex}` : "default";
          if (h.slots.readCounter(idx)[0] !== expectedCounts.get(idx)) where = `counter of ${what}`;
        }
        if (got !== wantRet || where) {
          problems.push(
            `seed ${opts.seed} (${opts.forceMode ?? "auto"} mode${
              opts.plain ? ", plain" : ""
            }), ${dirName}: ` +
              `expected ${want.verdict} by ${what}, kernel returned ${got}` +
              (where ? ` and ${where} did not count it` : "") +
              `\nframe ${hex(frame)}\nspec ${spec ? formatSpec(spec as never) : "-"}\n` +
              formatPolicy(policy),
          );
          // Resynchronise the tallies with the kernel so later packets are judged alone.
          for (const s of statExpected.keys()) statExpected.set(s, statValue(h, s));
          for (const k of expectedCounts.keys()) expectedCounts.set(k, h.slots.readCounter(k)[0]);
        }
        if (problems.length >= MAX_REPORTED) return problems;
      }
    }
    // No counter of the policy moved that should not have.
    for (let i = 0; i < compiled.counterCount; i++) {
      const idx = inst.counterBase + i;
      const got = h.slots.readCounter(idx)[0];
      if (got !== (expectedCounts.get(idx) ?? 0n)) {
        problems.push(
          `seed ${opts.seed}: counter ${i} counted ${got}, expected ${
            expectedCounts.get(idx) ?? 0n
          }`,
        );
      }
    }
  } finally {
    h.slots.remove(inst);
  }
  return problems;
}

Deno.test("differential: kernel and reference evaluator agree on generated policies and packets", () => {
  const only = Deno.env.get("TINYFW_DIFF_SEED");
  const seeds = only ? [Number(only)] : Array.from({ length: POLICIES }, (_, i) => 1000 + i);
  const h = openHarness();
  let packets = 0;
  const problems: string[] = [];
  try {
    for (const seed of seeds) {
      const policy = randomPolicy(new Rng(seed), { maxRules: seed % 4 === 0 ? 40 : 12 });
      const frames = randomFrames(seed, policy, FRAMES_PER_POLICY);
      // Every third policy in LPM mode, every other one without the fast paths
      // (address hashes, fast L4 tables), so every lookup path faces the same cases.
      const forceMode = seed % 3 === 0 ? "lpm" as const : undefined;
      const plain = seed % 2 === 0;
      problems.push(...checkPolicy(h, policy, frames, { forceMode, plain, seed }));
      packets += frames.filter((f) => f.frame.length >= ETH_HLEN).length;
      if (problems.length >= MAX_REPORTED) break;
    }
  } finally {
    closeHarness(h);
  }
  console.log(`differential: ${seeds.length} policies, ${packets} packets, 2 directions each`);
  assert.deepEqual(problems, [], problems.join("\n\n"));
  if (!only) assert.ok(seeds.length >= 50 && packets >= 20_000, "not enough cases were run");
});

Deno.test("differential: the built-in default policy in both L4 modes, with and without fast paths", () => {
  const h = openHarness();
  const problems: string[] = [];
  try {
    const policy = defaultPolicy();
    const frames = randomFrames(7, policy, 2000);
    for (const forceMode of ["hash", "lpm"] as const) {
      for (const plain of [false, true]) {
        problems.push(...checkPolicy(h, policy, frames, { forceMode, plain, seed: 7 }));
      }
    }
  } finally {
    closeHarness(h);
  }
  assert.deepEqual(problems, [], problems.join("\n\n"));
});
