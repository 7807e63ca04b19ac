/**
 * The compiler against the reference evaluator, without a kernel: for seeded
 * random policies and frames, the compiled tables walked like the XDP program
 * walks them (`decideCompiled`) must give the evaluator's decision — verdict,
 * reason and deciding rule — in hash mode, in forced LPM mode and in the mode
 * the compiler chooses.
 *
 * Reproduce one seed: TINYFW_SEED=<seed> deno test -A tests/policy/compile/random_test.ts
 */
import assert from "node:assert/strict";
import { compilePolicy, type L4Mode } from "../../../lib/policy/compile/compile.ts";
import { evaluateParsed } from "../../../lib/model/evaluate.ts";
import { decideCompiled } from "../../../lib/model/lookup.ts";
import { parsePacket } from "../../../lib/model/packet.ts";
import {
  formatPolicy,
  formatSpec,
  hex,
  randomFrame,
  randomPolicy,
  Rng,
} from "../../helpers/gen.ts";

const POLICIES = 250;
const FRAMES = 200;
const MAX_REPORTED = 5;

Deno.test("compiled tables agree with the evaluator (random policies × frames, all modes)", () => {
  const envOk =
    Deno.permissions.querySync({ name: "env", variable: "TINYFW_SEED" }).state === "granted";
  const only = envOk ? Deno.env.get("TINYFW_SEED") : undefined;
  const seeds = only ? [Number(only)] : Array.from({ length: POLICIES }, (_, i) => i + 1);
  const failures: string[] = [];
  const reasons: Record<string, number> = {};
  const modes: Record<string, number> = {};
  let checked = 0;
  for (const seed of seeds) {
    const rng = new Rng(seed);
    const policy = randomPolicy(rng, { maxRules: seed % 5 === 0 ? 40 : 12 });
    const compiled = (["hash", "lpm", undefined] as (L4Mode | undefined)[]).map((forceMode) =>
      compilePolicy(policy, { forceMode })
    );
    for (const d of compiled[2].dirs) modes[d.mode] = (modes[d.mode] ?? 0) + 1;
    for (let f = 0; f < FRAMES; f++) {
      const { spec, frame } = randomFrame(rng, policy);
      const pkt = parsePacket(frame);
      for (const dir of ["ingress", "egress"] as const) {
        const want = evaluateParsed(policy, dir, pkt);
        reasons[want.reason] = (reasons[want.reason] ?? 0) + 1;
        for (const c of compiled) {
          checked++;
          const got = decideCompiled(c, dir, pkt);
          try {
            assert.deepEqual(got, want);
          } catch {
            if (failures.length < MAX_REPORTED) {
              failures.push(
                `seed ${seed} frame ${f} ${dir} mode ${c.dirs[dir === "ingress" ? 0 : 1].mode}\n` +
                  `  want ${JSON.stringify(want)}\n  got  ${JSON.stringify(got)}\n` +
                  `${formatPolicy(policy)}\n  spec ${formatSpec(spec)}\n  frame ${hex(frame)}`,
              );
            }
          }
        }
      }
    }
  }
  console.log(
    `  ${checked} decisions checked; reasons ${JSON.stringify(reasons)}; auto modes ${
      JSON.stringify(modes)
    }`,
  );
  assert.equal(failures.length, 0, `mismatches:\n${failures.join("\n\n")}`);
  if (!only) {
    // The generator must exercise every outcome and both modes.
    for (const r of ["rule", "default", "nonip", "malformed", "nd"]) assert.ok(reasons[r] > 100, r);
    assert.ok(modes.lpm > 0 && modes.hash > 0, JSON.stringify(modes));
  }
});

Deno.test("generators are reproducible", () => {
  const a = randomPolicy(new Rng(99));
  const b = randomPolicy(new Rng(99));
  assert.deepEqual(a, b);
  const fa = Array.from({ length: 50 }, ((r) => () => hex(randomFrame(r, a).frame))(new Rng(5)));
  const fb = Array.from({ length: 50 }, ((r) => () => hex(randomFrame(r, b).frame))(new Rng(5)));
  assert.deepEqual(fa, fb);
});
