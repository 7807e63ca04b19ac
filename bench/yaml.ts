/**
 * Why policy files have a YAML parser of their own beside js-yaml: both
 * readers of lib/policy/yaml/ on files at the 100,000-rule limit, each
 * building the positioned tree the validator reads. They are the fast
 * parser for the plain subset (what `parseYamlTree` uses when it can) and
 * js-yaml's event stream (what it falls back to). Median of 9 runs after 2
 * warm-ups, in this process, with the agent's V8 flag.
 *
 *   deno task bench:yaml
 */
import { parseFast } from "../lib/policy/yaml/fast.ts";
import { treeFromEvents } from "../lib/policy/yaml/events.ts";
import { WORDS } from "../lib/policy/validate/schema.ts";
import { addressMax, portMax } from "../tests/helpers/max_policies.ts";
import { policySetToYaml } from "../tests/helpers/policy_yaml.ts";
import { largePolicy } from "../tests/helpers/gen.ts";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(fn: () => unknown): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

const files: [string, string][] = [
  ["port-max (100,000 rules, flow lists)", portMax(0)],
  ["address-max (100,000 rules, CIDR lists)", addressMax(0)],
  [
    "generated (100,000 rules, normalised)",
    policySetToYaml({ policies: [largePolicy(1, 100_000)] }),
  ],
];

console.log("file                                        MB   fast ms  js-yaml events ms  ratio");
for (const [name, text] of files) {
  if (parseFast(text, WORDS) === undefined) throw new Error(`${name}: not in the fast subset`);
  const fast: number[] = [];
  const events: number[] = [];
  for (let i = 0; i < 11; i++) {
    const f = time(() => parseFast(text, WORDS));
    const e = time(() => treeFromEvents(text));
    if (i < 2) continue; // warm-up
    fast.push(f);
    events.push(e);
  }
  const [mf, me] = [median(fast), median(events)];
  console.log(
    `${name.padEnd(42)} ${(text.length / 1e6).toFixed(1).padStart(4)} ${
      mf.toFixed(0).padStart(9)
    } ${me.toFixed(0).padStart(18)} ${(me / mf).toFixed(2).padStart(6)}`,
  );
}
