/**
 * The general YAML parser of policy files: js-yaml's event stream
 * (`parseEvents`, the whole YAML 1.2 grammar) turned into the positioned
 * tree of `nodes.ts`. `parse.ts` uses it for whatever the fast
 * parser (`fast.ts`) leaves: anchors and aliases, tags, block scalars,
 * multi-line values, directives, and every syntax error.
 *
 * - An alias is the very node of its anchor (a shared subtree, not a copy);
 *   the tree, aliases expanded, may hold at most {@link MAX_YAML_NODES}
 *   nodes: that allowance is fixed, whatever the size of the file.
 * - Tags: only the core ones (`!!str`, `!!int`, `!!float`, `!!bool`,
 *   `!!null`, `!!seq`, `!!map`, and the non-specific `!`).
 * - A `%YAML` directive for another version than 1.2 gets a warning: it
 *   changes nothing.
 * - One document; nesting at most {@link MAX_YAML_DEPTH} deep.
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
import { MAX_YAML_DEPTH, MAX_YAML_NODES } from "../model/mod.ts";
import {
  DECIMAL,
  keyText,
  plainScalar,
  type YamlProblem,
  type YMap,
  type YNode,
  type YScalar,
  type YSeq,
  type YValue,
} from "./nodes.ts";

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

/** Builds the tree of `text` from its events; the problems found on the way. */
export function treeFromEvents(text: string): { root: YNode | null; problems: YamlProblem[] } {
  let events;
  try {
    events = parseEvents(text, { maxDepth: MAX_YAML_DEPTH });
  } catch (e) {
    if (!(e instanceof YAMLException)) throw e;
    return {
      root: null,
      problems: [{
        severity: "error",
        offset: e.mark?.position ?? 0,
        message: syntaxMessage(e.reason),
      }],
    };
  }
  return new TreeBuilder(text).build(events);
}

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

  build(events: Event[]): { root: YNode | null; problems: YamlProblem[] } {
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
      offset: Math.max(0, this.#text.search(/^%YAML/m)),
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
      return plainScalar(raw, offset);
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
        key: keyText(key),
        keyOffset: key.offset,
        value: node,
      });
    }
  }
}

const MULTIPLE_DOCUMENTS = 'invalid YAML: the file holds more than one YAML document ("---"): ' +
  'put every policy in one "policies" list';
