/**
 * Policy files that are as hard to validate as we know how to make them,
 * each under the size cap (docs/POLICY.md, "Limits"): every stage's worst
 * case — the YAML parsers, aliases, the schema's limits, the compiler's
 * classes and steps, the shadowed-rule search, selection. Used by
 * tests/policy/limits_test.ts (what each gives) and by
 * bench/validation.ts (how long each takes and how much memory).
 *
 * @module
 */

/** One worst case: a name, its text, and what `check` must conclude. */
export interface WorstCase {
  name: string;
  /** What makes it hard. */
  about: string;
  text: () => string;
  /** `ok`: valid; otherwise a pattern the (one) error must match. */
  expect: "ok" | RegExp;
  /** The file has many errors (at most MAX_DIAGNOSTICS are reported), the first matching. */
  manyErrors?: boolean;
}

const header = (body: string[]) => ["policies:", ...body].join("\n") + "\n";

/** `n` IPv4 /32s (distinct). */
function v4s(n: number, base = 0): string[] {
  return Array.from({ length: n }, (_, i) => {
    const v = base + i;
    return `"${10 + (v >>> 24)}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}/32"`;
  });
}

export const WORST_CASES: readonly WorstCase[] = [
  {
    name: "shadowed-shared-cidrs",
    about: "125 rules that each list the same 2,000 CIDRs (250,000 in all), shadowed by the first",
    text: () => {
      const cidrs = `[${v4s(2000).join(", ")}]`;
      const rules = Array.from(
        { length: 125 },
        (_, i) => `      - {name: r${i}, action: deny, cidrs: ${cidrs}}`,
      );
      return header(["  - name: p", "    rules:", ...rules]);
    },
    expect: "ok",
  },
  {
    name: "alias-expansion",
    about: "3,000 rules sharing a 2,000-CIDR anchor through aliases, padded with comments to 30 MB",
    text: () => {
      const rules = [`      - {action: deny, cidrs: &all [${v4s(2000).join(", ")}]}`];
      for (let i = 1; i < 3000; i++) rules.push(`      - {action: deny, cidrs: *all}`);
      const body = header(["  - name: p", "    rules:", ...rules]);
      return body + "#".padEnd(99, " padding").concat("\n").repeat(
        Math.floor((30_000_000 - body.length) / 100),
      );
    },
    expect: /aliases expand the file to more than 3,000,000|cidrs lists reach/,
  },
  {
    name: "max-rules",
    about: "100,000 rules, each with a port range and a CIDR of its own (the limits)",
    text: () => {
      const rules: string[] = [];
      for (let i = 0; i < 100_000; i++) {
        const p = 1 + (i * 7919) % 60000;
        rules.push(
          `      - {name: r${i}, action: deny, protocol: tcp, ports: ["${p}-${p + (i % 20)}"], ` +
            `cidrs: ["${10 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24"]}`,
        );
      }
      return header(["  - name: p", "    rules:", ...rules]);
    },
    expect: "ok",
  },
  {
    name: "too-many-rules",
    about: "100,001 rules over two policies",
    text: () => {
      const rules = (n: number) => Array.from({ length: n }, () => "      - {action: allow}");
      return header([
        "  - name: a",
        "    rules:",
        ...rules(50_000),
        "  - name: b",
        "    rules:",
        ...rules(50_001),
      ]);
    },
    expect: /has 100,001 rules in all; a policy file holds at most 100,000/,
  },
  {
    name: "max-cidrs-mixed-lengths",
    about: "250,000 CIDRs of many lengths, both families, five to a rule, in 50,000 rules",
    text: () => {
      // Each CIDR in a block of its own (a /24 or a /48), of a length within it: no nesting,
      // so every CIDR is a class of its own and the file stays within the compiled limits.
      const rules: string[] = [];
      let k = 0;
      for (let i = 0; i < 50_000; i++) {
        const cidrs: string[] = [];
        for (let j = 0; j < 5; j++, k++) {
          if (k % 2) {
            const b = k >> 1;
            cidrs.push(
              `"fd00:${(b >> 16).toString(16)}:${(b & 0xffff).toString(16)}::/${48 + (k % 81)}"`,
            );
          } else {
            const b = k >> 1;
            cidrs.push(`"${10 + (b >> 16)}.${(b >> 8) & 255}.${b & 255}.0/${24 + (k % 9)}"`);
          }
        }
        rules.push(
          `      - {action: deny, protocol: udp, ports: [${1 + (i % 1000)}], cidrs: [${
            cidrs.join(", ")
          }]}`,
        );
      }
      return header(["  - name: p", "    rules:", ...rules]);
    },
    expect: "ok",
  },
  {
    name: "too-many-cidrs",
    about: "250,001 CIDRs",
    text: () => {
      const rules: string[] = [];
      for (let i = 0; i < 50_001; i++) {
        rules.push(`      - {action: deny, cidrs: [${v4s(5, i * 5).join(", ")}]}`);
      }
      return header(["  - name: p", "    rules:", ...rules]);
    },
    expect: /cidrs lists reach 250,00[1-5] entries here .* at most 250,000/,
  },
  {
    name: "shadowed-any-rules",
    about: "40,000 identical rules without CIDRs before 60,000 with: the copies are left out early",
    text: () => {
      const rules: string[] = [];
      for (let i = 0; i < 40_000; i++) {
        rules.push(`      - {action: allow, protocol: tcp, ports: [8080]}`);
      }
      for (let i = 0; i < 60_000; i++) {
        rules.push(`      - {action: deny, cidrs: [${v4s(1, i)[0]}]}`);
      }
      return header(["  - name: p", "    rules:", ...rules]);
    },
    expect: "ok",
  },
  {
    name: "compile-steps",
    about: "60,000 CIDR rules on every TCP port, then 40,000 on one port each, without CIDRs: " +
      "every address class must consider them all",
    text: () => {
      const rules: string[] = [];
      for (let i = 0; i < 60_000; i++) {
        rules.push(
          `      - {action: deny, protocol: tcp, ports: ["1-65535"], cidrs: [${v4s(1, i)[0]}]}`,
        );
      }
      for (let i = 0; i < 40_000; i++) {
        rules.push(`      - {action: allow, protocol: tcp, ports: [${1 + i}]}`);
      }
      return header(["  - name: p", "    rules:", ...rules]);
    },
    expect: /takes more than 40,000,000 steps to compile/,
  },
  {
    name: "port-entries",
    about: "100,000 rules of 15 single ports each, each with a CIDR: 1,500,000 exact L4 entries",
    text: () => {
      const rules: string[] = [];
      for (let i = 0; i < 100_000; i++) {
        const ports = Array.from({ length: 15 }, (_, j) => 1 + ((i * 15 + j) * 3) % 65000);
        rules.push(
          `      - {action: deny, protocol: udp, ports: [${ports.join(", ")}], cidrs: [${
            v4s(1, i)[0]
          }]}`,
        );
      }
      return header(["  - name: p", "    rules:", ...rules]);
    },
    expect:
      /needs (at least )?[0-9,]+ (rule_hash|port_lpm) entries for ingress, more than a policy/,
  },
  {
    name: "deep-nesting",
    about: "10,000 nested flow lists",
    text: () => `policies: ${"[".repeat(10_000)}1${"]".repeat(10_000)}\n`,
    expect: /nested more than 64 levels deep/,
  },
  {
    name: "many-nodes-fast",
    about: "a flow list of 3,000,001 numbers (the fast parser's count)",
    text: () => `policies: [${"1,".repeat(3_000_000)}1]\n`,
    expect: /too many YAML values: more than 3,000,000/,
  },
  {
    name: "many-nodes-events",
    about:
      "a block list of 4,000,000 items after an anchor (js-yaml's path, bounded before parsing)",
    text: () => `x: &a 1\npolicies:\n${"- 1\n".repeat(4_000_000)}`,
    expect: /too many YAML values: its separators allow up to 8,000,00\d/,
  },
  {
    name: "events-at-the-limit",
    about: "2,900,000 values after an anchor: the most js-yaml's events are let hold",
    text: () => `policies: &a [${"1,".repeat(2_899_999)}1]\n`,
    expect: /has 2,900,000 policies; a policy file holds at most 1,000/,
  },
  {
    name: "many-errors",
    about: "100,000 rules with a bad action each: 1,000 errors reported, the rest counted",
    text: () => {
      const body: string[] = [];
      for (let i = 0; i < 1000; i++) {
        body.push(`  - name: p${i}`, "    rules:");
        for (let j = 0; j < 100; j++) body.push("      - {action: maybe}");
      }
      return header(body);
    },
    expect: /"maybe" is not an action: use allow or deny/,
    manyErrors: true,
  },
  {
    name: "huge-string",
    about: "one 30 MB string where an action is wanted",
    text: () => `policies:\n  - name: p\n    rules:\n      - action: ${"a".repeat(30_000_000)}\n`,
    expect: /\(30,000,000 characters\) is not an action/,
  },
  {
    name: "many-policies-selectors",
    about: "1,000 policies with container selectors, each compared with the ones before",
    text: () => {
      const body: string[] = [];
      for (let i = 0; i < 1000; i++) {
        body.push(
          `  - name: p${i}`,
          `    selector: {namespace: ns${i % 7}, labels: {app: a${i}, tier: t${i % 3}}}`,
          "    rules:",
          ...Array.from(
            { length: 50 },
            (_, j) =>
              `      - {action: deny, protocol: tcp, ports: [${1 + j}], cidrs: ["10.${
                i % 256
              }.${j}.0/24"]}`,
          ),
        );
      }
      return header(body);
    },
    expect: "ok",
  },
];
