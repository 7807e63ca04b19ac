/**
 * YAML text → a small positioned tree (mappings, sequences, scalars with
 * their offsets) for the policy validator, built from the event stream of
 * `js-yaml` (`parseEvents`).
 *
 * Reading rules (docs/POLICY.md):
 * - YAML 1.2 with the core schema, whatever `%YAML` directive the file
 *   carries: `yes`/`no` are strings, `0120` is the integer 120, `1:20` a
 *   string. A directive for another version gets a warning.
 * - A number not written as a plain decimal integer (`1e3`, `80.0`, `0x50`,
 *   `0120`, `+5`) keeps the text it was written as (`YScalar.source`), so
 *   that the validator can refuse it where an integer is wanted.
 * - Duplicate keys are kept (the validator reports them).
 * - An alias is the very node of its anchor (a shared subtree, not a copy).
 *   The tree, aliases expanded, may hold at most {@link MAX_YAML_NODES}
 *   nodes: that allowance is fixed, whatever the size of the file.
 * - Tags: only the core ones (`!!str`, `!!int`, `!!float`, `!!bool`,
 *   `!!null`, `!!seq`, `!!map`, and the non-specific `!`).
 * - One document; nesting at most {@link MAX_YAML_DEPTH} deep.
 *
 * Memory: js-yaml keeps every event of the file until the tree is built
 * (about 130 bytes each), so a file whose separators allow more than
 * {@link MAX_YAML_NODES} nodes is refused before it is parsed.
 *
 * @module
 */

import {
  boolCoreTag,
  EVENT_ID,
  floatCoreTag,
  getScalarValue,
  intCoreTag,
  NOT_RESOLVED,
  nullCoreTag,
  parseEvents,
  SCALAR_STYLE,
  type ScalarEvent,
  type ScalarTagDefinition,
  strTag,
  YAMLException,
} from "js-yaml";
import { MAX_YAML_DEPTH, MAX_YAML_NODES } from "./limits.ts";

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

/** The tree of a document (null when it is empty or has an error) and its YAML problems. */
export interface YamlTree {
  root: YNode | null;
  problems: YamlProblem[];
}

/** Parses YAML text (without a BOM) into a positioned tree. */
export function parseYamlTree(text: string): YamlTree {
  const bound = nodeBound(text);
  if (bound > MAX_YAML_NODES) {
    return failed(
      0,
      `the file holds too many YAML values: its separators allow up to ${
        bound.toLocaleString("en-US")
      }, and a policy file may hold at most ${MAX_YAML_NODES.toLocaleString("en-US")}`,
    );
  }
  let events;
  try {
    events = parseEvents(text, { maxDepth: MAX_YAML_DEPTH });
  } catch (e) {
    if (!(e instanceof YAMLException)) throw e;
    return failed(e.mark?.position ?? 0, syntaxMessage(e.reason));
  }
  return new TreeBuilder(text).build(events);
}

function failed(offset: number, message: string): YamlTree {
  return { root: null, problems: [{ severity: "error", offset, message }] };
}

/**
 * An upper bound of the nodes in `text`: a node starts only after a flow
 * indicator (`[`, `{`, `,`), a line break, a block indicator (`- `, `? `,
 * `: `) or is an alias (`*`), so counting those (plus one) bounds them, in
 * one pass without parsing.
 */
export function nodeBound(text: string): number {
  let n = 1;
  const end = text.length;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 44 || c === 91 || c === 123 || c === 10 || c === 42) n++; // , [ { \n *
    else if (c === 45 || c === 63 || c === 58) { // - ? :
      const d = i + 1 < end ? text.charCodeAt(i + 1) : 32;
      if (d === 32 || d === 10 || d === 13 || d === 9) n++;
      else if (c === 58 && (d === 44 || d === 93 || d === 125)) n++; // `:,` `:]` `:}` in flow
    }
  }
  return n;
}

const FRIENDLY: Readonly<Record<string, string>> = {
  "tab characters must not be used in indentation":
    "tabs are not allowed in indentation: indent with spaces",
  "bad indentation of a mapping entry":
    'bad indentation of a mapping entry: give the keys of a mapping the same indentation, and quote values that contain ": "',
  "deficient indentation":
    "a line is indented less than the block it belongs to (or a quote or bracket opened before it is not closed)",
  [`nesting exceeded maxDepth (${MAX_YAML_DEPTH})`]:
    `the YAML is nested more than ${MAX_YAML_DEPTH} levels deep`,
};

function syntaxMessage(reason: string): string {
  const friendly = FRIENDLY[reason];
  if (friendly) return `invalid YAML: ${friendly}`;
  const first = reason.split("\n")[0].replace(/[.:]\s*$/, "");
  return `invalid YAML: ${first.charAt(0).toLowerCase()}${first.slice(1)}`;
}

// ---------------------------------------------------------------------------
// Scalars

/** The core schema's implicit types, in its order of resolution. */
const IMPLICIT: readonly ScalarTagDefinition<YValue>[] = [
  nullCoreTag,
  boolCoreTag,
  intCoreTag,
  floatCoreTag,
];

/** The tags a policy file may carry, by how they are written after `!!`. */
const CORE_TAGS: Readonly<Record<string, ScalarTagDefinition<YValue> | "seq" | "map">> = {
  str: strTag,
  int: intCoreTag,
  float: floatCoreTag,
  bool: boolCoreTag,
  null: nullCoreTag,
  seq: "seq",
  map: "map",
};

const DECIMAL = /^-?(?:0|[1-9][0-9]*)$/;

/** A plain scalar resolved with the core schema; `source` kept for numbers not in decimal. */
export function resolvePlain(s: string): { value: YValue; source?: string } {
  const c = s.charCodeAt(0);
  // A plain scalar starting with a letter other than n/N/t/T/f/F is a string.
  if ((c >= 97 && c <= 122) || (c >= 65 && c <= 90)) {
    const l = c | 32;
    if (l !== 110 && l !== 116 && l !== 102) return { value: s };
  }
  for (const tag of IMPLICIT) {
    const v = tag.resolve(s, false, tag.tagName);
    if (v === NOT_RESOLVED) continue;
    if (typeof v === "number" && !(tag === intCoreTag && DECIMAL.test(s))) {
      return { value: v, source: s };
    }
    return { value: v as YValue };
  }
  return { value: s };
}

/** The name of a core tag (`!!int`, `!<tag:yaml.org,2002:int>`), or the tag as written. */
function coreTagName(tag: string): string {
  if (tag.startsWith("!!")) return tag.slice(2);
  const m = /^!<tag:yaml\.org,2002:([a-z]+)>$/.exec(tag);
  return m ? m[1] : tag;
}

// ---------------------------------------------------------------------------
// The tree

/** Thrown (as a value) to stop building with a problem. */
class Stop {
  constructor(readonly problem: YamlProblem) {}
}

interface Frame {
  node: YMap | YSeq;
  /** Nodes in the subtree so far, aliases expanded. */
  size: number;
  anchor: string | undefined;
  /** A mapping's key waiting for its value. */
  key: YNode | undefined;
}

type Event = ReturnType<typeof parseEvents>[number];

class TreeBuilder {
  readonly #text: string;
  readonly #stack: Frame[] = [];
  readonly #anchors = new Map<string, { node: YNode; size: number }>();
  readonly #problems: YamlProblem[] = [];
  #root: YNode | null = null;
  /** Nodes of the whole tree so far, aliases expanded. */
  #total = 0;
  /** Where the last node with a position ended (to place an empty list item after it). */
  #lastEnd = 0;

  constructor(text: string) {
    this.#text = text;
  }

  build(events: Event[]): YamlTree {
    let documents = 0;
    try {
      for (let i = 0; i < events.length; i++) {
        const e = events[i];
        switch (e.type) {
          case EVENT_ID.DOCUMENT:
            if (++documents > 1) this.#stop(this.#offsetAfter(events, i), MULTIPLE_DOCUMENTS);
            for (const d of e.directives) {
              if (d.kind === "yaml" && d.version !== "1.2") this.#versionWarning(d.version);
            }
            break;
          case EVENT_ID.MAPPING:
          case EVENT_ID.SEQUENCE: {
            this.#tag(e.tagStart, e.tagEnd, e.type === EVENT_ID.MAPPING ? "map" : "seq", e.start);
            const node: YMap | YSeq = e.type === EVENT_ID.MAPPING
              ? { kind: "map", offset: e.start, entries: [] }
              : { kind: "seq", offset: e.start, items: [] };
            this.#count(1, e.start);
            this.#lastEnd = e.start + 1;
            this.#stack.push({ node, size: 1, anchor: this.#name(e), key: undefined });
            break;
          }
          case EVENT_ID.SCALAR:
            this.#count(1, e.valueStart);
            this.#add(this.#scalar(e), 1, this.#name(e));
            if (e.valueEnd >= 0) this.#lastEnd = e.valueEnd;
            break;
          case EVENT_ID.ALIAS: {
            const name = this.#text.slice(e.anchorStart, e.anchorEnd);
            const at = e.anchorStart - 1;
            const target = this.#anchors.get(name);
            if (!target) {
              this.#stop(
                at,
                `invalid YAML: the alias *${name} refers to no anchor &${name} before it`,
              );
            }
            this.#count(target.size, at);
            this.#add(target.node, target.size, undefined);
            this.#lastEnd = e.anchorEnd;
            break;
          }
          case EVENT_ID.POP: {
            const frame = this.#stack.pop();
            if (frame) this.#add(frame.node, frame.size, frame.anchor);
            break;
          }
        }
      }
    } catch (e) {
      if (!(e instanceof Stop)) throw e;
      return { root: null, problems: [...this.#problems, e.problem] };
    }
    return { root: this.#root, problems: this.#problems };
  }

  #stop(offset: number, message: string): never {
    throw new Stop({ severity: "error", offset, message });
  }

  /** Counts `n` more nodes (an alias counts its whole subtree). */
  #count(n: number, offset: number): void {
    this.#total += n;
    if (this.#total > MAX_YAML_NODES) {
      this.#stop(
        Math.max(0, offset),
        `aliases expand the file to more than ${
          MAX_YAML_NODES.toLocaleString("en-US")
        } YAML values, the most a policy file may hold`,
      );
    }
  }

  #versionWarning(version: string): void {
    this.#problems.push({
      severity: "warning",
      offset: Math.max(0, this.#text.indexOf("%YAML")),
      message: `%YAML ${version}: tinyfw reads every policy file as YAML 1.2 with the core ` +
        "schema (yes and no are strings, 0120 is the number 120, 1:20 a string)",
    });
  }

  /** The offset of the first node after event `i` (where a second document starts). */
  #offsetAfter(events: Event[], i: number): number {
    for (let j = i + 1; j < events.length; j++) {
      const e = events[j];
      const at = e.type === EVENT_ID.SCALAR
        ? e.valueStart
        : e.type === EVENT_ID.MAPPING || e.type === EVENT_ID.SEQUENCE
        ? e.start
        : e.type === EVENT_ID.ALIAS
        ? e.anchorStart
        : -1;
      if (at >= 0) return Math.max(0, this.#text.lastIndexOf("---", at));
    }
    return Math.max(0, this.#text.lastIndexOf("---"));
  }

  #name(e: { anchorStart: number; anchorEnd: number }): string | undefined {
    return e.anchorStart >= 0 ? this.#text.slice(e.anchorStart, e.anchorEnd) : undefined;
  }

  /** Refuses a tag other than the core ones (and one of the wrong kind). */
  #tag(start: number, end: number, kind: "map" | "seq" | "scalar", offset: number): string {
    if (start < 0) return "";
    const tag = this.#text.slice(start, end);
    if (tag === "!") return "str";
    const name = coreTagName(tag);
    const known = CORE_TAGS[name];
    if (!known) {
      this.#stop(
        start,
        `invalid YAML: unknown tag ${tag}; policy files use only the core tags ` +
          "(!!str, !!int, !!float, !!bool, !!null, !!seq, !!map)",
      );
    }
    const tagKind = known === "seq" || known === "map" ? known : "scalar";
    if (tagKind !== kind) {
      const what = { map: "a mapping", seq: "a list", scalar: "a single value" };
      this.#stop(Math.max(0, offset), `invalid YAML: ${tag} cannot be given to ${what[kind]}`);
    }
    return name;
  }

  #scalar(e: ScalarEvent): YScalar {
    const quoted = e.style === SCALAR_STYLE.SINGLE_QUOTED ||
      e.style === SCALAR_STYLE.DOUBLE_QUOTED;
    const offset = e.valueStart < 0 ? this.#emptyAt(e) : quoted ? e.valueStart - 1 : e.valueStart;
    const raw = e.valueStart < 0 ? "" : getScalarValue(this.#text, e);
    const tag = this.#tag(e.tagStart, e.tagEnd, "scalar", offset);
    if (tag === "") {
      if (e.style !== SCALAR_STYLE.PLAIN) return { kind: "scalar", value: raw, offset };
      const r = resolvePlain(raw);
      return r.source === undefined
        ? { kind: "scalar", value: r.value, offset }
        : { kind: "scalar", value: r.value, offset, source: r.source };
    }
    const def = CORE_TAGS[tag] as ScalarTagDefinition<YValue>;
    const v = def.resolve(raw, true, def.tagName);
    if (v === NOT_RESOLVED) {
      this.#stop(offset, `invalid YAML: ${JSON.stringify(raw)} is not a valid !!${tag}`);
    }
    const node: YScalar = { kind: "scalar", value: v as YValue, offset };
    if (typeof v === "number" && !(tag === "int" && DECIMAL.test(raw))) node.source = raw;
    return node;
  }

  /**
   * Where an empty scalar is reported: at its tag or anchor; a mapping's
   * value at its key; a list item just after its `-`.
   */
  #emptyAt(e: ScalarEvent): number {
    if (e.tagStart >= 0) return e.tagStart;
    if (e.anchorStart >= 0) return e.anchorStart - 1;
    const top = this.#stack[this.#stack.length - 1];
    if (!top) return 0;
    if (top.key) return top.key.offset;
    if (top.node.kind === "seq") {
      const dash = /-(?=[ \t\r\n]|$)/g;
      dash.lastIndex = this.#lastEnd;
      const m = dash.exec(this.#text);
      if (m) return m.index + 1;
    }
    return top.node.offset;
  }

  /** Adds a finished node to its parent (or makes it the root). */
  #add(node: YNode, size: number, anchor: string | undefined): void {
    if (anchor !== undefined) this.#anchors.set(anchor, { node, size });
    const top = this.#stack[this.#stack.length - 1];
    if (!top) {
      this.#root = node;
      return;
    }
    top.size += size;
    const parent = top.node;
    if (parent.kind === "seq") {
      parent.items.push(node);
    } else if (top.key === undefined) {
      top.key = node;
    } else {
      const key = top.key;
      top.key = undefined;
      parent.entries.push({
        key: key.kind === "scalar" ? key.value : shortJson(key),
        keyOffset: key.offset,
        value: node,
      });
    }
  }
}

const MULTIPLE_DOCUMENTS = 'invalid YAML: the file holds more than one YAML document ("---"): ' +
  'put every policy in one "policies" list';

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
function shortJson(n: YNode): string {
  const s = JSON.stringify(plain(n));
  return s.length > 60 ? `${s.slice(0, 59)}…` : s;
}
