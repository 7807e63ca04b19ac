/**
 * Policy files at the capacity contract's maxima (docs/POLICY.md, "Limits"),
 * for the reload test and bench/reload.ts: a reload from one to another must
 * fit the maps, which hold the policy in force and the new one side by side.
 *
 * - `addressMax`: 100,000 rules, 249,998 CIDRs (/32s, direction both): the
 *   address share (500,000 entries) and the rule_hash share (1,000,000) full.
 * - `portMax`: 100,000 rules with port ranges and a /24 each: LPM mode, the
 *   port_lpm share (500,000) nearly full.
 *
 * Every file ends with `discard`, a rule that denies UDP to port 9 from
 * anywhere, so that a flood to that port is dropped by each of them.
 *
 * @module
 */

const DISCARD = "      - {name: discard, action: deny, protocol: udp, ports: [9]}";

/** `a.b.c.d` of the `n`-th address of 100.64.0.0/10 shifted by `variant` × 2^20. */
function addr(n: number, variant: number): string {
  const v = (100 << 24) + (64 << 16) + ((variant & 3) << 20) + n;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** 99,999 TCP rules with two or three /32s each, in both directions, then `discard`. */
export function addressMax(variant: number): string {
  const lines = ["policies:", "  - name: hosts", "    rules:"];
  let n = 0;
  for (let i = 0; i < 99_999; i++) {
    const cidrs = Array.from({ length: i % 2 ? 2 : 3 }, () => `"${addr(n++, variant)}/32"`);
    lines.push(
      `      - {name: r${i}, action: deny, direction: both, protocol: tcp, ` +
        `ports: [${1024 + ((i * 7 + variant) % 60_000)}], cidrs: [${cidrs.join(", ")}]}`,
    );
  }
  lines.push(DISCARD);
  return lines.join("\n") + "\n";
}

/** 99,999 TCP rules, each a port range and a /24 of its own, then `discard`. */
export function portMax(variant: number): string {
  const lines = ["policies:", "  - name: hosts", "    rules:"];
  for (let i = 0; i < 99_999; i++) {
    const p = 1024 + ((i * 7919 + variant * 13) % 60_000);
    const k = i + variant * 100_000; // a /24 of 10.0.0.0/7 and on
    const net = `${10 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}.0`;
    lines.push(
      `      - {name: r${i}, action: deny, protocol: tcp, ports: ["${p}-${p + (i % 29)}"], ` +
        `cidrs: ["${net}/24"]}`,
    );
  }
  lines.push(DISCARD);
  return lines.join("\n") + "\n";
}
