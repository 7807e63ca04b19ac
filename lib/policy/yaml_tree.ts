/**
 * YAML text → a small positioned tree (maps, sequences, scalars with their
 * offsets) for the policy validator.
 *
 * Two parsers produce the same tree:
 * - a fast parser (`yaml_fast.ts`) for the plain subset of YAML that policy
 *   files are written in (block and single-line flow collections, plain and
 *   simple quoted scalars). It gives up on anything else.
 * - the `yaml` package (YAML 1.2, core schema) for everything, including
 *   syntax errors. It is about 50 times slower (9 s for 100,000 rules).
 *
 * Resolution is YAML 1.2's core schema (`yes`/`no` are strings; `0o17`,
 * `0x1f` are integers). Duplicate keys are kept (the validator reports them),
 * aliases are expanded (up to {@link MAX_ALIAS_NODES} nodes), tags are
 * resolved by `yaml`.
 *
 * @module
 */

import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  type Node,
  parseDocument,
} from "yaml";
import { parseFast } from "./yaml_fast.ts";

/** A scalar's value under the core schema. */
export type YValue = string | number | boolean | null;

/** A scalar: its value and the offset of its first character (a quote included). */
export interface YScalar {
  kind: "scalar";
  value: YValue;
  offset: number;
}

/**
 * A key/value pair of a mapping. The key is kept as a value (a collection
 * used as a key becomes its JSON text); an empty value is a null scalar at
 * the key's offset.
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

/** The tree of a document (null when it is empty) and its YAML problems. */
export interface YamlTree {
  root: YNode | null;
  problems: YamlProblem[];
  /** Which parser produced the tree. */
  parser: "fast" | "yaml";
}

/**
 * Most nodes produced by expanding aliases (a guard against "billion
 * laughs"): this many, or one per 10 characters of a larger file.
 */
export const MAX_ALIAS_NODES = 100_000;
/** Deepest nesting accepted (policy files need 6 levels). */
export const MAX_DEPTH = 64;

/**
 * Parses YAML text (without a BOM) into a positioned tree. Strings equal to
 * one of `words` (keys, keywords) may be returned as that very string.
 */
export function parseYamlTree(text: string, words?: ReadonlySet<string>): YamlTree {
  const fast = parseFast(text, words);
  if (fast !== undefined) return { root: fast, problems: [], parser: "fast" };
  return parseWithLibrary(text);
}

const FRIENDLY: Partial<Record<string, string>> = {
  TAB_AS_INDENT: "tabs are not allowed in indentation: indent with spaces",
  BLOCK_AS_IMPLICIT_KEY:
    'a mapping cannot start inside a value: give the keys of a mapping the same indentation, and quote values that contain ": "',
  MULTIPLE_DOCS:
    'the file holds more than one YAML document ("---"): put every policy in one "policies" list',
};

/** Parses with the `yaml` package: any YAML, syntax errors included. */
export function parseWithLibrary(text: string): YamlTree {
  const doc = parseDocument(text, { uniqueKeys: false, prettyErrors: false });
  const problems: YamlProblem[] = [];
  const lines = new Set<number>();
  for (const e of doc.errors) {
    // One error per line: a single mistake often makes the library report
    // several tokens of the same line.
    const line = lineStartOf(text, e.pos[0]);
    if (lines.has(line)) continue;
    lines.add(line);
    problems.push({ severity: "error", offset: e.pos[0], message: yamlMessage(e.code, e.message) });
  }
  for (const w of doc.warnings) {
    problems.push({
      severity: "warning",
      offset: w.pos[0],
      message: yamlMessage(w.code, w.message),
    });
  }
  if (problems.some((p) => p.severity === "error")) return { root: null, problems, parser: "yaml" };
  const conv = new Converter(doc, Math.max(MAX_ALIAS_NODES, Math.floor(text.length / 10)));
  const root = doc.contents === null ? null : conv.node(doc.contents as Node, 0, 0);
  if (conv.problem) problems.push(conv.problem);
  return { root: conv.problem ? null : root, problems, parser: "yaml" };
}

function lineStartOf(text: string, offset: number): number {
  return text.lastIndexOf("\n", offset - 1) + 1;
}

function yamlMessage(code: string, message: string): string {
  const friendly = FRIENDLY[code];
  if (friendly) return `invalid YAML: ${friendly}`;
  let m = message.split("\n")[0].replace(/ at line \d+, column \d+.*$/, "").replace(/[.:]\s*$/, "");
  m = m.charAt(0).toLowerCase() + m.slice(1);
  return code === "TAG_RESOLVE_FAILED"
    ? `YAML: ${m} (the value is read as a string)`
    : `invalid YAML: ${m}`;
}

class Converter {
  problem: YamlProblem | undefined;
  #aliasNodes = 0;
  /** The outermost alias being expanded (where an expansion that is too large is reported). */
  #aliasAt = 0;
  constructor(readonly doc: Document, readonly maxAliasNodes: number) {}

  node(n: Node | null, depth: number, emptyAt: number, inAlias = false): YNode {
    if (this.problem) return { kind: "scalar", value: null, offset: emptyAt };
    if (depth > MAX_DEPTH) {
      this.problem = {
        severity: "error",
        offset: n?.range?.[0] ?? emptyAt,
        message: `the YAML is nested more than ${MAX_DEPTH} levels deep`,
      };
      return { kind: "scalar", value: null, offset: emptyAt };
    }
    if (inAlias && ++this.#aliasNodes > this.maxAliasNodes) {
      this.problem = {
        severity: "error",
        offset: this.#aliasAt,
        message: `aliases expand to more than ${this.maxAliasNodes} nodes`,
      };
      return { kind: "scalar", value: null, offset: emptyAt };
    }
    if (n === null || n === undefined) return { kind: "scalar", value: null, offset: emptyAt };
    if (isAlias(n)) {
      if (!inAlias) this.#aliasAt = n.range![0];
      const target = n.resolve(this.doc);
      if (!target) return { kind: "scalar", value: null, offset: n.range![0] };
      return this.node(target as Node, depth + 1, n.range![0], true);
    }
    if (isScalar(n)) {
      const v = n.value;
      const value: YValue = v === null || typeof v === "string" || typeof v === "number" ||
          typeof v === "boolean"
        ? v
        : typeof v === "bigint"
        ? Number(v)
        : String(v);
      const empty = value === null && n.range![0] === n.range![1] && emptyAt >= 0;
      return { kind: "scalar", value, offset: empty ? emptyAt : n.range![0] };
    }
    if (isMap(n)) {
      const entries: YEntry[] = [];
      for (const p of n.items) {
        if (!isPair(p)) continue;
        const keyAt = (p.key as Node | null)?.range?.[0] ?? n.range![0];
        const k = this.node(p.key as Node | null, depth + 1, keyAt, inAlias);
        const key = k.kind === "scalar" ? k.value : JSON.stringify(plain(k));
        const value = this.node(p.value as Node | null, depth + 1, k.offset, inAlias);
        entries.push({ key, keyOffset: k.offset, value });
      }
      return { kind: "map", offset: n.range![0], entries };
    }
    if (isSeq(n)) {
      // An empty item keeps its own position (-1: no key to point at).
      const items = n.items.map((it) =>
        it ? this.node(it as Node, depth + 1, -1, inAlias) : this.node(null, depth + 1, n.range![0])
      );
      return { kind: "seq", offset: n.range![0], items };
    }
    return { kind: "scalar", value: String(n), offset: emptyAt };
  }
}

/** A node as plain JavaScript (for messages). */
export function plain(n: YNode): unknown {
  if (n.kind === "scalar") return n.value;
  if (n.kind === "seq") return n.items.map(plain);
  return Object.fromEntries(n.entries.map((e) => [String(e.key), plain(e.value)]));
}
