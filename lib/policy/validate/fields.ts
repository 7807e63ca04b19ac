/**
 * The checks of a rule's `ports`, `icmp` and `cidrs` (SPEC §3.1), with the
 * warnings that concern them alone: ports or CIDRs listed twice or nested,
 * host bits set, all of one IP family and nothing of the other, ICMP types of
 * the other family, neighbour discovery denied. `schema.ts` builds on it.
 *
 * @module
 */

import { CidrError, CidrParser, containsCidr, formatIPv4 } from "../../net/mod.ts";
import { type Action, type Cidr, type IcmpMatch, MAX_CIDRS, type PortRange } from "../model/mod.ts";
import { ND_TYPE_FIRST, ND_TYPE_LAST } from "../../abi/mod.ts";
import { describe, type Reporter, show, type Where } from "./report.ts";
import { AT, type Context, KEYS, unknownKeyMessage } from "./keys.ts";
import type { YEntry, YMap, YNode, YScalar } from "../yaml/mod.ts";

/** The first entry of each known key of a mapping, in the order of its `KEYS` list. */
export type Found = (YEntry | undefined)[];

/** The value of `key` in a mapping (the first, if repeated). */
export function entryOf(map: YMap, key: string): YEntry | undefined {
  for (const e of map.entries) if (e.key === key) return e;
}

/** Thrown once a limit of the capacity contract is reached (after reporting it): stop. */
export class LimitReached extends Error {}

/** Reports problems and checks lists and rule fields; `Validator` (schema.ts) adds the rest. */
export class FieldValidator {
  readonly cidrs = new CidrParser();
  /** CIDR entries read so far, in the whole file (aliases expanded). */
  cidrCount = 0;
  readonly found: Record<Context, Found> = {
    file: [undefined],
    policy: new Array(KEYS.policy.length).fill(undefined),
    selector: new Array(KEYS.selector.length).fill(undefined),
    rule: new Array(KEYS.rule.length).fill(undefined),
    icmp: new Array(KEYS.icmp.length).fill(undefined),
  };

  constructor(readonly report: Reporter) {}

  error(at: number, where: Where, field: string | undefined, message: string): void {
    this.report.error(at, where, field, message);
  }

  warn(at: number, where: Where, field: string | undefined, message: string): void {
    this.report.warn(at, where, field, message);
  }

  /**
   * Checks the keys of a mapping: duplicates and unknown keys are errors.
   * Returns the first entry of each known key.
   */
  keys(map: YMap, ctx: Context, where: Where, field: string | undefined): Found {
    const allowed = KEYS[ctx] as readonly string[];
    // Reused per context: callers destructure it at once, and no context
    // nests in itself.
    const out = this.found[ctx];
    out.fill(undefined);
    const entries = map.entries;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      const key = e.key;
      const at = typeof key === "string" ? allowed.indexOf(key) : -1;
      if (at < 0) {
        this.error(e.keyOffset, where, field, unknownKeyMessage(key, ctx));
        continue;
      }
      const first = out[at];
      if (first) {
        this.error(
          e.keyOffset,
          where,
          field,
          `duplicate key ${show(key)}: it is already given on line ${
            this.report.lineOf(first.keyOffset)
          }`,
        );
      } else out[at] = e;
    }
    return out;
  }

  /** A non-empty list; undefined (after an error) otherwise. */
  list(n: YNode, where: Where, field: string, example: string): YNode[] | undefined {
    if (n.kind === "seq") {
      if (n.items.length > 0) return n.items;
      this.error(
        n.offset,
        where,
        field,
        `is an empty list: remove it, or list at least one (${example})`,
      );
      return;
    }
    const message = n.kind === "scalar" && n.value === null
      ? `is empty: remove it, or give a list (${example})`
      : `must be a list (${example}), not ${describe(n)}`;
    this.error(n.offset, where, field, message);
  }

  ports(n: YNode, where: Where): PortRange[] | undefined {
    const items = this.list(n, where, "ports", '[80, "8000-8099"]');
    if (!items) return;
    const out = new Array<PortRange>(items.length);
    let ok = true;
    for (let k = 0; k < items.length; k++) {
      const r = this.port(items[k], where, k);
      if (r) out[k] = r;
      else ok = false;
    }
    if (!ok) return;
    this.overlappingPorts(out, items, where);
    return out;
  }

  /** Item `k` of `ports`. */
  port(n: YNode, where: Where, k: number): PortRange | undefined {
    const v = n.kind === "scalar" ? n.value : undefined;
    const field = `ports[${k}]`;
    if (typeof v === "number") {
      const written = n.kind === "scalar" && n.source !== undefined ? n.source : undefined;
      if (written !== undefined || !Number.isInteger(v)) {
        this.error(
          n.offset,
          where,
          field,
          notDecimal(written ?? show(v), v, "a port", "ports are whole numbers 1–65535"),
        );
        return;
      }
      if (v < 1 || v > 65535) {
        this.error(n.offset, where, field, `${show(v)} is not a port: ports are 1–65535`);
        return;
      }
      return { from: v, to: v };
    }
    if (typeof v === "string") {
      const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(v);
      if (!m) {
        this.error(
          n.offset,
          where,
          field,
          `${show(v)} is not a port or range: write 80 or "8000-8099"`,
        );
        return;
      }
      const what = m[2] === undefined ? "port" : "valid range";
      if (/^0[0-9]/.test(m[1]) || (m[2] !== undefined && /^0[0-9]/.test(m[2]))) {
        const fixed = m[2] === undefined ? String(Number(m[1])) : `${Number(m[1])}-${Number(m[2])}`;
        this.error(
          n.offset,
          where,
          field,
          `${show(v)} is not a ${what}: write it without leading zeros (${show(fixed)})`,
        );
        return;
      }
      const from = Number(m[1]);
      const to = m[2] === undefined ? from : Number(m[2]);
      if (from < 1 || to < 1 || from > 65535 || to > 65535) {
        this.error(n.offset, where, field, `${show(v)} is not a ${what}: ports are 1–65535`);
        return;
      }
      if (from > to) {
        this.error(
          n.offset,
          where,
          field,
          `${show(v)} is not a valid range: the start is above the end`,
        );
        return;
      }
      return { from, to };
    }
    this.error(
      n.offset,
      where,
      field,
      `must be a port (80) or a range ("8000-8099"), not ${describe(n)}`,
    );
  }

  /** Warns about ports listed twice or inside another port range of the same rule. */
  overlappingPorts(ports: PortRange[], items: YNode[], where: Where): void {
    if (ports.length < 2) return;
    const order = ports.map((_, k) => k);
    order.sort((a, b) => ports[a].from - ports[b].from || ports[b].to - ports[a].to || a - b);
    let cover = order[0];
    for (let t = 1; t < order.length; t++) {
      const k = order[t];
      const r = ports[k];
      const c = ports[cover];
      if (r.from <= c.to) {
        const text = portText(items[k]);
        const other = `${portText(items[cover])} (ports[${cover}])`;
        const message = r.from === c.from && r.to === c.to
          ? `${text} is listed twice (also ports[${cover}])`
          : r.to <= c.to
          ? `${text} is already covered by ${other}`
          : `${text} overlaps ${other}`;
        this.warn(items[k].offset, where, `ports[${k}]`, message);
      }
      if (r.to > c.to) cover = k;
    }
  }

  icmp(n: YNode, where: Where): IcmpMatch | undefined {
    if (n.kind !== "map" || n.entries.length === 0) {
      const message = n.kind === "map" || (n.kind === "scalar" && n.value === null)
        ? "is empty: give { type: N } or { type: N, code: N }"
        : `must be a mapping { type: N, code: N } (code optional), not ${describe(n)}`;
      this.error(n.offset, where, "icmp", message);
      return;
    }
    const found = this.keys(n, "icmp", where, "icmp");
    const t = found[AT.icmp.type];
    const c = found[AT.icmp.code];
    if (!t) {
      this.error(
        n.offset,
        where,
        "icmp",
        '"type" is missing: give the ICMP type (e.g. 8, echo request)',
      );
    }
    const type = t ? this.byte(t.value, where, "icmp.type", "an ICMP type") : undefined;
    const code = c ? this.byte(c.value, where, "icmp.code", "an ICMP code") : undefined;
    if (type === undefined || (c && code === undefined)) return;
    return code === undefined ? { type } : { type, code };
  }

  byte(n: YNode, where: Where, field: string, what: string): number | undefined {
    const v = n.kind === "scalar" ? n.value : undefined;
    const written = n.kind === "scalar" ? n.source : undefined;
    if (
      typeof v === "number" && written === undefined && Number.isInteger(v) && v >= 0 && v <= 255
    ) {
      return v;
    }
    if (typeof v === "number" && (written !== undefined || !Number.isInteger(v))) {
      this.error(
        n.offset,
        where,
        field,
        notDecimal(written ?? show(v), v, what, "it is a whole number 0–255"),
      );
    } else if (typeof v === "number") {
      this.error(n.offset, where, field, `${show(v)} is not ${what}: it is a whole number 0–255`);
    } else {
      this.error(n.offset, where, field, `must be a number 0–255, not ${describe(n)}`);
    }
  }

  /** Warnings for ICMP types of the other family and for denied ND types. */
  icmpFamilyHints(
    icmp: IcmpMatch,
    protocol: "icmp" | "icmpv6",
    n: YNode,
    where: Where,
    action: Action,
  ): void {
    const at = n.kind === "map" ? (entryOf(n, "type")?.value.offset ?? n.offset) : n.offset;
    const t = icmp.type;
    if (
      protocol === "icmp" && (t === 128 || t === 129 || (t >= ND_TYPE_FIRST && t <= ND_TYPE_LAST))
    ) {
      this.warn(
        at,
        where,
        "icmp.type",
        `${t} is an ICMPv6 type, but the protocol is icmp (IPv4); use protocol icmpv6` +
          (t === 128 || t === 129 ? `, or type ${t === 128 ? 8 : 0} for IPv4 echo` : ""),
      );
    }
    if (protocol === "icmpv6" && (t === 0 || t === 8)) {
      this.warn(
        at,
        where,
        "icmp.type",
        `${t} is an ICMP (IPv4) echo type, but the protocol is icmpv6; use type ${
          t === 8 ? 128 : 129
        } for IPv6 echo, or protocol icmp`,
      );
    }
    if (protocol === "icmpv6" && action === "deny" && t >= ND_TYPE_FIRST && t <= ND_TYPE_LAST) {
      this.warn(
        at,
        where,
        "icmp.type",
        `denies neighbour discovery (type ${t}), which is otherwise always passed; ` +
          "this can cut the host off its network",
      );
    }
  }

  cidrList(n: YNode, where: Where): Cidr[] | undefined {
    const items = this.list(n, where, "cidrs", '["10.0.0.0/8", "fd00::/8"]');
    if (!items) return;
    this.cidrCount += items.length;
    if (this.cidrCount > MAX_CIDRS) {
      this.error(
        n.offset,
        where,
        "cidrs",
        `the file's cidrs lists reach ${
          this.cidrCount.toLocaleString("en-US")
        } entries here (aliases expanded); a policy file holds at most ${
          MAX_CIDRS.toLocaleString("en-US")
        }, all rules together`,
      );
      throw new LimitReached();
    }
    const out = new Array<Cidr>(items.length);
    let ok = true;
    for (let k = 0; k < items.length; k++) {
      const it = items[k];
      if (it.kind !== "scalar" || typeof it.value !== "string") {
        this.error(
          it.offset,
          where,
          `cidrs[${k}]`,
          `must be a CIDR such as "10.0.0.0/8", not ${describe(it)}`,
        );
        ok = false;
        continue;
      }
      if (it.value.length > MAX_CIDR_TEXT) {
        this.error(
          it.offset,
          where,
          `cidrs[${k}]`,
          `${show(it.value)} is not a CIDR: it is ${it.value.length} characters long`,
        );
        ok = false;
        continue;
      }
      try {
        const r = this.cidrs.parse(it.value);
        if (r.cidr.family === 6 && isIPv4Mapped(r.cidr)) {
          const v4 = `${formatIPv4(r.cidr.addr.subarray(12))}/${r.cidr.len - 96}`;
          this.warn(
            it.offset,
            where,
            `cidrs[${k}]`,
            `${show(it.value)} is an IPv4-mapped IPv6 address: it matches IPv6 packets only, ` +
              `never IPv4 ones; for IPv4 write ${show(v4)}`,
          );
        }
        if (r.hostBitsSet) {
          this.warn(
            it.offset,
            where,
            `cidrs[${k}]`,
            `${show(it.value)} has bits set past the prefix length; it is read as ${
              show(r.cidr.text)
            }`,
          );
        }
        out[k] = r.cidr;
      } catch (e) {
        if (!(e instanceof CidrError)) throw e;
        this.error(it.offset, where, `cidrs[${k}]`, e.message);
        ok = false;
      }
    }
    if (!ok) return;
    this.cidrHints(out, items as YScalar[], where);
    return out;
  }

  /** Duplicate or nested CIDRs, and "all of IPv4" without IPv6 (and the reverse). */
  cidrHints(cidrs: Cidr[], items: YScalar[], where: Where): void {
    let has4 = false;
    let has6 = false;
    let all4 = -1;
    let all6 = -1;
    for (let k = 0; k < cidrs.length; k++) {
      const c = cidrs[k];
      if (c.family === 4) {
        has4 = true;
        if (c.len === 0 && all4 < 0) all4 = k;
      } else {
        has6 = true;
        if (c.len === 0 && all6 < 0) all6 = k;
      }
    }
    if (all4 >= 0 && !has6) {
      this.warn(
        items[all4].offset,
        where,
        `cidrs[${all4}]`,
        `${
          show(items[all4].value)
        } covers all of IPv4 but the rule has no IPv6 CIDR, so it never ` +
          'matches IPv6: add "::/0" (or remove cidrs to match every address)',
      );
    }
    if (all6 >= 0 && !has4) {
      this.warn(
        items[all6].offset,
        where,
        `cidrs[${all6}]`,
        `${
          show(items[all6].value)
        } covers all of IPv6 but the rule has no IPv4 CIDR, so it never ` +
          'matches IPv4: add "0.0.0.0/0" (or remove cidrs to match every address)',
      );
    }
    if (cidrs.length < 2) return;
    const order = cidrs.map((_, k) => k);
    order.sort((a, b) => compareForNesting(cidrs[a], cidrs[b]) || a - b);
    const stack: number[] = [];
    for (const k of order) {
      const c = cidrs[k];
      while (stack.length && !containsCidr(cidrs[stack[stack.length - 1]], c)) stack.pop();
      if (stack.length) {
        const o = stack[stack.length - 1];
        const message = cidrs[o].len === c.len
          ? `${show(items[k].value)} is listed twice (also cidrs[${o}])`
          : `${show(items[k].value)} is inside ${
            show(items[o].value)
          } (cidrs[${o}]); it adds nothing`;
        this.warn(items[k].offset, where, `cidrs[${k}]`, message);
      } else stack.push(k);
    }
  }

  /** ICMP rules whose CIDRs are all of the other family never see real traffic. */
  cidrFamilyHint(cidrs: Cidr[], protocol: "icmp" | "icmpv6", e: YEntry, where: Where): void {
    const family = protocol === "icmp" ? 4 : 6;
    if (cidrs.some((c) => c.family === family)) return;
    this.warn(
      e.keyOffset,
      where,
      "cidrs",
      `every CIDR is IPv${family === 4 ? 6 : 4}, but ${protocol} is carried by IPv${family}: ` +
        `the rule never matches real traffic; use protocol ${
          protocol === "icmp" ? "icmpv6" : "icmp"
        }`,
    );
  }
}

/** Longer than the longest CIDR text (an IPv6 address with an embedded IPv4 one, and /128). */
const MAX_CIDR_TEXT = 64;

/** True for a CIDR inside ::ffff:0:0/96 (IPv4-mapped IPv6 addresses), at least /96 long. */
function isIPv4Mapped(c: Cidr): boolean {
  if (c.len < 96) return false;
  for (let i = 0; i < 10; i++) if (c.addr[i] !== 0) return false;
  return c.addr[10] === 0xff && c.addr[11] === 0xff;
}

/**
 * The message for a number that is not an integer written in decimal:
 * `80.5`, and `1e3`, `80.0`, `0x50`, `0120`, `+5` (with the integer meant).
 */
function notDecimal(written: string, v: number, what: string, rule: string): string {
  if (!Number.isInteger(v)) return `${written} is not ${what}: ${rule}`;
  if (/^[-+]?0[0-9]/.test(written)) {
    return `${written} is not ${what}: write it without the leading zero (${v})`;
  }
  return `${written} is not ${what}: write it as a whole number in decimal (${v})`;
}

/** Orders CIDRs so that a CIDR comes after every CIDR containing it. */
function compareForNesting(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.addr.length; i++) if (a.addr[i] !== b.addr[i]) return a.addr[i] - b.addr[i];
  return a.len - b.len;
}

function portText(n: YNode): string {
  return n.kind === "scalar" ? show(n.value) : "?";
}
