/**
 * The YAML readers against js-yaml on random YAML-ish text: the fast parser
 * gives the event-stream tree whenever it accepts a text, and the positioned
 * tree holds what js-yaml's own `load` reads.
 */
import assert from "node:assert/strict";
import { load } from "js-yaml";
import { parseFast } from "../../../lib/policy/yaml/fast.ts";
import { treeFromEvents } from "../../../lib/policy/yaml/events.ts";
import { parseYamlTree, type YNode } from "../../../lib/policy/yaml/parse.ts";
import { WORDS } from "../../../lib/policy/validate/schema.ts";
import { treeAsJs } from "../../helpers/yaml.ts";
import { mulberry32 } from "../../helpers/gen.ts";

/** Random YAML-ish text: policy-like nesting, odd scalars, comments, mutations. */
function randomYaml(rnd: () => number): string {
  const pick = <T>(a: readonly T[]) => a[Math.floor(rnd() * a.length)];
  const atoms = [
    "a",
    "web",
    "80",
    "-1",
    "0o7",
    "0x1f",
    "1.5",
    ".inf",
    "~",
    "null",
    "true",
    "yes",
    "10.0.0.0/8",
    "::/0",
    "fd00::1",
    "'q'",
    "'it''s'",
    '"d"',
    '""',
    "''",
    "a b",
    "x#y",
    "-x",
    ":x",
    "a:b",
    "8000-8099",
    "a,b",
    "[1]",
    "{}",
    "[]",
    "#",
    " #c",
    "&a",
    "*a",
    "!t",
    "|",
    ">",
    "?",
    "%",
    "@",
    "`",
    "-",
    ":",
    ",",
    "]",
    "}",
    "{a: 1}",
    "[a, 'b', \"c\"]",
    "[a,]",
    "{a: [1, 2], b: {c: d}}",
    "1e3",
    "+5",
    "012",
    "-0",
    ".5",
    "1.",
    "True",
    "NULL",
    "x:",
    "x: y",
    "allow",
    "tcp",
    "ports: [80]",
    "name",
  ];
  const keys = ["a", "b", "name", "'k'", '"q"', "1", "x y", "ports", "action"];
  const gen = (indent: number, depth: number): string => {
    const pad = " ".repeat(indent);
    const r = rnd();
    if (depth > 3 || r < 0.3) return pick(atoms);
    let out = "";
    const n = 1 + Math.floor(rnd() * 3);
    if (r < 0.65) {
      for (let i = 0; i < n; i++) {
        const key = pick(keys);
        if (rnd() < 0.5) {
          out += `${i ? pad : ""}${key}: ${pick(atoms)}${rnd() < 0.2 ? " # c" : ""}\n`;
        } else {
          const ni = indent + pick([0, 1, 2, 4]);
          out += `${i ? pad : ""}${key}:${rnd() < 0.2 ? "  # c" : ""}\n${" ".repeat(ni)}${
            gen(ni, depth + 1)
          }`;
          if (!out.endsWith("\n")) out += "\n";
        }
      }
      return out;
    }
    for (let i = 0; i < n; i++) {
      const item = gen(indent + 2, depth + 1);
      out += `${i ? pad : ""}- ${item}${item.endsWith("\n") ? "" : "\n"}`;
      if (rnd() < 0.1) out += "\n";
    }
    return out;
  };
  let s = gen(0, 0);
  if (rnd() < 0.5) {
    const edits = Math.floor(rnd() * 3);
    for (let i = 0; i < edits; i++) {
      const p = Math.floor(rnd() * (s.length + 1));
      s = rnd() < 0.4
        ? s.slice(0, p) +
          pick([" ", "  ", "\n", "-", ":", "#", "'", "[", "]", ",", "a", " - ", ": "]) +
          s.slice(p)
        : s.slice(0, p) + s.slice(p + 1);
    }
  }
  return s;
}

Deno.test("yaml: the fast parser gives js-yaml's events' tree whenever it accepts the text", () => {
  const rnd = mulberry32(20240611);
  let accepted = 0;
  for (let t = 0; t < 20000; t++) {
    const text = randomYaml(rnd);
    const fast = parseFast(text, t % 2 ? WORDS : undefined);
    if (fast === undefined) continue;
    accepted++;
    const lib = treeFromEvents(text);
    assert.deepEqual(lib.problems, [], JSON.stringify(text));
    assert.deepEqual(fast, lib.root, JSON.stringify(text));
  }
  assert.ok(accepted > 5000, `${accepted} accepted`);
});

Deno.test("yaml: the positioned tree holds what js-yaml's own load reads, on random YAML", () => {
  const rnd = mulberry32(20240611);
  let compared = 0;
  for (let t = 0; t < 20000; t++) {
    const text = randomYaml(rnd);
    const tree = parseYamlTree(text);
    let expected: unknown;
    try {
      expected = load(text);
    } catch (e) {
      // The library refuses it: so does the tree, unless it is a duplicate key (the
      // validator's) or an empty document (load's own "empty source" error).
      const refused = tree.problems.some((p) => p.severity === "error");
      const dup = /duplicated mapping key/.test(String(e));
      const keyed = hasCollectionKey(tree.root); // js-yaml's {}-based maps refuse such keys
      assert.ok(refused || dup || keyed || tree.root === null, JSON.stringify(text));
      continue;
    }
    if (tree.problems.some((p) => p.severity === "error")) continue; // a tag or limit of ours
    if (hasCollectionKey(tree.root)) continue; // js-yaml turns those into "[object Object]"
    compared++;
    assert.deepEqual(treeAsJs(tree.root), expected ?? null, JSON.stringify(text));
  }
  assert.ok(compared > 5000, `${compared} compared`);
});

function hasCollectionKey(n: YNode | null): boolean {
  if (n === null || n.kind === "scalar") return false;
  if (n.kind === "seq") return n.items.some(hasCollectionKey);
  return n.entries.some((e) =>
    e.key?.toString().startsWith("[") || e.key?.toString().startsWith("{") ||
    hasCollectionKey(e.value)
  );
}
