/**
 * The capacity contract (docs/POLICY.md, "Limits"): the worst cases we know
 * are each valid or refused with one sentence naming the limit, the map
 * sizes follow from the per-file limits, and a file's policies share one
 * budget. Their time and memory are measured by bench/validation.ts, not
 * here.
 */
import assert from "node:assert/strict";
import {
  FILE_MAX_ADDR_ENTRIES,
  FILE_MAX_LPM_ENTRIES,
  FILE_MAX_RULE_ENTRIES,
  MAP_RESERVE,
  MAX_ADDR_ENTRIES,
  MAX_COUNTERS,
  MAX_LPM_ENTRIES,
  MAX_RULE_ENTRIES,
  MAX_SLOTS,
} from "../../lib/abi/layout.ts";
import {
  MAX_CIDRS,
  MAX_DIAGNOSTICS,
  MAX_POLICIES,
  MAX_RULES,
} from "../../lib/policy/model/limits.ts";
import { diagnosticsOf, parsePolicyText } from "../../lib/policy/load.ts";
import { formatDiagnostic } from "../../lib/policy/validate/diagnostics.ts";
import { WORST_CASES } from "../helpers/worst_cases.ts";

for (const c of WORST_CASES) {
  Deno.test(`limits: worst case ${c.name} (${c.about})`, () => {
    const r = parsePolicyText(c.text(), "w.yaml");
    if (c.expect === "ok") {
      assert.ok(r.ok, r.ok ? "" : formatDiagnostic(r.errors[0], "w.yaml"));
      return;
    }
    assert.equal(r.ok, false, `${c.name} was accepted`);
    const errors = r.ok ? [] : r.errors;
    if (c.manyErrors) {
      // Every value is wrong: the first 1,000 errors are reported, the rest counted.
      assert.equal(errors.length, MAX_DIAGNOSTICS + 1);
      assert.match(errors[MAX_DIAGNOSTICS].message, /^[0-9,]+ more errors are not shown/);
    } else {
      assert.equal(errors.length, 1, errors.map((e) => e.message).join("\n"));
    }
    assert.match(errors[0].message, c.expect);
    assert.match(errors[0].message, /^[^\n]+$/);
  });
}

Deno.test("limits: the maps hold two files at the limits at once, plus a reserve", () => {
  // Address entries: one per distinct CIDR, per direction.
  assert.ok(FILE_MAX_ADDR_ENTRIES >= 2 * MAX_CIDRS);
  for (
    const [map, file] of [
      [MAX_ADDR_ENTRIES, FILE_MAX_ADDR_ENTRIES],
      [MAX_RULE_ENTRIES, FILE_MAX_RULE_ENTRIES],
      [MAX_LPM_ENTRIES, FILE_MAX_LPM_ENTRIES],
    ]
  ) assert.equal(map, 2 * file + MAP_RESERVE);
  // Counters: 2 per rule and direction... 2n + 2 per policy, rounded up to blocks of 8.
  const perFile = 2 * MAX_RULES + (2 + 8) * (MAX_POLICIES + 1);
  assert.ok(MAX_COUNTERS >= 2 * perFile, `${MAX_COUNTERS} counters for two files of ${perFile}`);
  // Slots: every policy of both files and the built-in default, slot 0 unused.
  assert.ok(MAX_SLOTS > 2 * (MAX_POLICIES + 1) + 1);
});

Deno.test("limits: a file's policies share one budget: the second past it is refused", () => {
  // Each policy: 300 classes (a /24 each) × a range split into ~30 prefixes... in LPM mode.
  const policy = (name: string, n: number) => [
    `  - name: ${name}`,
    `    selector: {labels: {app: ${name}}}`,
    "    rules:",
    ...Array.from(
      { length: n },
      (_, i) =>
        `      - {action: deny, protocol: tcp, ports: ["2-65534"], cidrs: ["10.${i >> 8}.${
          i & 255
        }.0/24"]}`,
    ),
  ];
  const one = parsePolicyText(["policies:", ...policy("a", 9000)].join("\n"));
  assert.ok(one.ok, one.ok ? "" : one.errors[0].message);
  const two = parsePolicyText(
    ["policies:", ...policy("a", 9000), ...policy("b", 9000)].join("\n"),
  );
  assert.equal(two.ok, false);
  const lines = diagnosticsOf(two).filter((d) => d.severity === "error").map((d) => d.message);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /port_lpm entries for ingress, more than a policy file may use/);
  assert.match(lines[0], /of them taken before/);
});

Deno.test("limits: the shadowed-rule search is bounded, and every shadowed rule still warned", () => {
  // Shared CIDR lists: each shadowed rule is compared with the first through a set of its
  // CIDRs, built once: all 124 are named.
  const c = WORST_CASES.find((w) => w.name === "shadowed-shared-cidrs")!;
  const shared = parsePolicyText(c.text(), "w.yaml");
  assert.ok(shared.ok);
  const named = shared.warnings.filter((w) => /never matches/.test(w.message));
  assert.equal(named.length, 124);
  assert.ok(named.every((w) => /rule 1 \(r0\) comes first/.test(w.message)));
  // 950 rules shadowed by rule 5,001, each compared with the 5,000 before it first:
  // once the search's steps (MAX_COVER_WORK) are spent, the rest get the general message.
  const lines = ["policies:", "  - name: p", "    rules:"];
  for (let i = 0; i < 5000; i++) {
    lines.push(`      - {action: deny, protocol: udp, ports: [${i + 1}]}`);
  }
  lines.push("      - {action: deny, protocol: tcp}");
  for (let i = 0; i < 950; i++) {
    lines.push(`      - {action: deny, protocol: tcp, ports: [${i + 1}]}`);
  }
  const r = parsePolicyText(lines.join("\n"), "w.yaml");
  assert.ok(r.ok);
  const shadowed = r.warnings.filter((w) => /never matches/.test(w.message));
  assert.equal(shadowed.length, 950);
  const first = shadowed.filter((w) => /rule 5001 comes first/.test(w.message)).length;
  assert.ok(first > 100 && first < 950, `${first} named`);
  assert.match(shadowed[949].message, /the rules before it together match every packet/);
});
