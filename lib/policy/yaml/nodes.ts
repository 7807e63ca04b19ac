/**
 * The positioned YAML tree the policy validator reads (mappings, sequences,
 * scalars with their offsets), and how a plain scalar is read: YAML 1.2's
 * core schema, through js-yaml's own tag definitions, whatever `%YAML`
 * directive the file carries. Both parsers (`fast.ts`, `events.ts`)
 * build this tree with these rules.
 *
 * @module
 */

import {
  boolCoreTag,
  floatCoreTag,
  intCoreTag,
  NOT_RESOLVED,
  nullCoreTag,
  type ScalarTagDefinition,
} from "js-yaml";

/** A scalar's value under the core schema. */
export type YValue = string | number | boolean | null;

/** A scalar: its value and the offset of its first character (a quote included). */
export interface YScalar {
  kind: "scalar";
  value: YValue;
  offset: number;
  /**
   * For a number not written as a plain decimal integer (`1e3`, `80.0`,
   * `0x50`, `0120`, `+5`, `.inf`): the text as written. Absent otherwise.
   */
  source?: string;
}

/**
 * A key/value pair of a mapping. The key is kept as a value (a collection
 * used as a key becomes a short JSON text); an empty value is a null scalar
 * at the key's offset.
 */
export interface YEntry {
  key: YValue;
  keyOffset: number;
  value: YNode;
}

/** A mapping; `offset` is its first key (block) or its `{` (flow). */
export interface YMap {
  kind: "map";
  offset: number;
  entries: YEntry[];
}

/** A sequence; `offset` is its first `-` (block) or its `[` (flow). */
export interface YSeq {
  kind: "seq";
  offset: number;
  items: YNode[];
}

/** Any node. */
export type YNode = YScalar | YMap | YSeq;

/** A problem of the YAML itself, at an offset. */
export interface YamlProblem {
  severity: "error" | "warning";
  offset: number;
  message: string;
}

/** The core schema's implicit types, in its order of resolution. */
const IMPLICIT: readonly ScalarTagDefinition<YValue>[] = [
  nullCoreTag,
  boolCoreTag,
  intCoreTag,
  floatCoreTag,
];

/** An integer written the plain way: decimal, no `+`, no leading zero. */
export const DECIMAL = /^-?(?:0|[1-9][0-9]*)$/;

/**
 * A plain scalar at `offset`, resolved with the core schema, as a node:
 * with `source` for a number not written as a plain decimal integer.
 */
export function plainScalar(s: string, offset: number): YScalar {
  const c = s.charCodeAt(0);
  // A plain scalar starting with a letter other than n/N/t/T/f/F is a string.
  if ((c >= 97 && c <= 122) || (c >= 65 && c <= 90)) {
    const l = c | 32;
    if (l !== 110 && l !== 116 && l !== 102) return { kind: "scalar", value: s, offset };
  }
  for (const tag of IMPLICIT) {
    const v = tag.resolve(s, false, tag.tagName);
    if (v === NOT_RESOLVED) continue;
    if (typeof v === "number" && !(tag === intCoreTag && DECIMAL.test(s))) {
      return { kind: "scalar", value: v, offset, source: s };
    }
    return { kind: "scalar", value: v as YValue, offset };
  }
  return { kind: "scalar", value: s, offset };
}

/** What a plain scalar reads as (the core schema); `source` kept for numbers not in decimal. */
export function resolvePlain(s: string): { value: YValue; source?: string } {
  const n = plainScalar(s, 0);
  return n.source === undefined ? { value: n.value } : { value: n.value, source: n.source };
}

/** A node as plain JavaScript (for messages), cut off below a few levels. */
export function plain(n: YNode, depth = 0): unknown {
  if (n.kind === "scalar") return n.value;
  if (depth >= 3) return n.kind === "seq" ? ["…"] : { "…": "…" };
  if (n.kind === "seq") return n.items.slice(0, 8).map((i) => plain(i, depth + 1));
  return Object.fromEntries(
    n.entries.slice(0, 8).map((e) => [String(e.key), plain(e.value, depth + 1)]),
  );
}

/** A collection used as a key, as short JSON text. */
export function keyText(n: YNode): YValue {
  if (n.kind === "scalar") return n.value;
  const s = JSON.stringify(plain(n));
  return s.length > 60 ? `${s.slice(0, 59)}…` : s;
}
