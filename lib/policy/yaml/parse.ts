/**
 * YAML text → the positioned tree of `nodes.ts`, for the policy
 * validator. Reading rules (docs/POLICY.md): YAML 1.2 with the core schema
 * whatever `%YAML` directive the file carries (`yes`/`no` are strings,
 * `0120` is the integer 120, `1:20` a string); a number not written as a
 * plain decimal integer keeps the text it was written as
 * (`YScalar.source`), so that the validator can refuse it where an integer
 * is wanted; duplicate keys are kept (the validator reports them).
 *
 * Two parsers build the same tree:
 * - `fast.ts`, for the plain subset policy files are written in (block
 *   and single-line flow collections, plain and simple quoted scalars); it
 *   gives up on anything else. It reads a 100,000-rule file in about a third
 *   of the time js-yaml's events take (docs/BENCHMARKS.md).
 * - `events.ts`, on js-yaml's event stream, for everything else and
 *   every syntax error.
 *
 * Memory: either keeps every node of the file (js-yaml also every event, at
 * about 130 bytes each) until the tree is built, so a file whose separators
 * allow more than {@link MAX_YAML_NODES} nodes is refused before it is
 * parsed.
 *
 * @module
 */

import { MAX_YAML_NODES } from "../model/mod.ts";
import { treeFromEvents } from "./events.ts";
import { parseFast, TOO_MANY } from "./fast.ts";
import type { YamlProblem, YNode } from "./nodes.ts";

export type { YEntry, YMap, YNode, YScalar, YSeq, YValue } from "./nodes.ts";
export { plain, resolvePlain } from "./nodes.ts";

/** The tree of a document (null when it is empty or has an error) and its YAML problems. */
export interface YamlTree {
  root: YNode | null;
  problems: YamlProblem[];
  /** Which parser built the tree. */
  parser: "fast" | "events";
}

/**
 * Parses YAML text (without a BOM) into a positioned tree. Strings equal to
 * one of `words` (keys, keywords) may be returned as that very string.
 */
export function parseYamlTree(text: string, words?: ReadonlySet<string>): YamlTree {
  const tooMany = (counted: string): YamlTree => ({
    root: null,
    problems: [{
      severity: "error",
      offset: 0,
      message: `the file holds too many YAML values: ${counted}, and a policy file may hold at ` +
        `most ${MAX_YAML_NODES.toLocaleString("en-US")}`,
    }],
    parser: "fast",
  });
  // The fast parser counts its nodes as it goes.
  const fast = parseFast(text, words);
  if (fast === TOO_MANY) return tooMany(`more than ${MAX_YAML_NODES.toLocaleString("en-US")}`);
  if (fast !== undefined) return { root: fast, problems: [], parser: "fast" };
  // js-yaml keeps every event before the tree can count them: bound them first.
  const bound = nodeBound(text);
  if (bound > MAX_YAML_NODES) {
    return tooMany(`its separators allow up to ${bound.toLocaleString("en-US")}`);
  }
  return { ...treeFromEvents(text), parser: "events" };
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
