/**
 * The policy file corpus (tests/policies/): every file states, in its first
 * comment lines, the exit code of `tinyfw check` and every diagnostic,
 * exactly as printed (minus the `FILE:` prefix), in order:
 *
 * ```yaml
 * # expect-exit: 2
 * # expect: 12:17: error: policy "web", rule 1, ports[0]: 0 is not a port: ports are 1–65535
 * ```
 *
 * `bad/` holds malformed or suspicious files (each has an error or a
 * warning); `good/` holds valid files (exit 0), which may still warn.
 */

import assert from "node:assert/strict";
import { formatDiagnostic } from "../../lib/policy/validate/diagnostics.ts";
import { defaultPolicyYaml } from "../../lib/policy/model/default.ts";
import { diagnosticsOf, loadPolicyFile, parsePolicyText } from "../../lib/policy/load.ts";
import { policySetToYaml } from "../helpers/policy_yaml.ts";
import { load } from "js-yaml";
import { parseFast } from "../../lib/policy/yaml/fast.ts";
import { treeFromEvents } from "../../lib/policy/yaml/events.ts";
import { parseYamlTree } from "../../lib/policy/yaml/parse.ts";
import { WORDS } from "../../lib/policy/validate/schema.ts";
import { treeAsJs } from "../helpers/yaml.ts";

const ROOT = new URL("../policies/", import.meta.url).pathname;

interface Expectation {
  exit: number;
  lines: string[];
  /** The file after its `# expect` lines. */
  body: string;
}

function readText(path: string): string {
  const text = Deno.readTextFileSync(path);
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function expectationsOf(path: string): Expectation {
  const lines = readText(path).split("\n");
  let exit: number | undefined;
  const expected: string[] = [];
  let i = 0;
  for (; i < lines.length; i++) {
    const exitMatch = /^# expect-exit: (\d+)$/.exec(lines[i]);
    const lineMatch = /^# expect: (.*)$/.exec(lines[i]);
    if (exitMatch) {
      assert.equal(exit, undefined, `${path}: expect-exit given twice`);
      exit = Number(exitMatch[1]);
    } else if (lineMatch) expected.push(lineMatch[1]);
    else break;
  }
  assert.notEqual(exit, undefined, `${path}: no "# expect-exit:" line`);
  return { exit: exit!, lines: expected, body: lines.slice(i).join("\n") };
}

function filesOf(kind: "bad" | "good"): string[] {
  return [...Deno.readDirSync(ROOT + kind)]
    .filter((e) => e.isFile && e.name.endsWith(".yaml"))
    .map((e) => `${ROOT}${kind}/${e.name}`)
    .sort();
}

/** The exit code `tinyfw check` gives a file and what it prints, minus the file prefix. */
function check(path: string): { exit: number; lines: string[] } {
  const r = loadPolicyFile(path);
  return {
    exit: r.ok ? 0 : 2,
    lines: diagnosticsOf(r).map((d) => {
      const line = formatDiagnostic(d, path);
      assert.ok(line.startsWith(`${path}:`), line);
      return line.slice(path.length + 1);
    }),
  };
}

for (const kind of ["bad", "good"] as const) {
  for (const path of filesOf(kind)) {
    const name = path.slice(ROOT.length);
    Deno.test(`corpus ${name}`, () => {
      const want = expectationsOf(path);
      const got = check(path);
      assert.deepEqual(got.lines, want.lines, `${name}: diagnostics`);
      assert.equal(got.exit, want.exit, `${name}: exit code`);
      if (kind === "good") assert.equal(want.exit, 0, `${name}: a good file is valid`);
      else assert.ok(want.exit === 2 || want.lines.length > 0, `${name}: a bad file has a finding`);
    });
  }
}

Deno.test("corpus: at least 60 bad files, each described by a comment", () => {
  const bad = filesOf("bad");
  assert.ok(bad.length >= 60, `${bad.length} bad files`);
  for (const path of bad) {
    const { body } = expectationsOf(path);
    assert.match(body, /^# \S/, `${path}: starts with a description comment`);
  }
});

Deno.test("corpus: good/default.yaml is the built-in default policy's YAML", () => {
  assert.equal(expectationsOf(`${ROOT}good/default.yaml`).body, defaultPolicyYaml());
});

Deno.test("corpus: every good file survives a round trip through policySetToYaml", () => {
  for (const path of filesOf("good")) {
    const r = loadPolicyFile(path);
    assert.ok(r.ok, path);
    const again = parsePolicyText(policySetToYaml(r.set), "normalised", { compile: false });
    assert.ok(again.ok, path);
    assert.deepEqual(again.set, r.set, path);
  }
});

Deno.test("corpus: the fast parser agrees with js-yaml's events on every file it accepts", () => {
  let accepted = 0;
  for (const path of [...filesOf("bad"), ...filesOf("good")]) {
    const text = readText(path);
    const fast = parseFast(text, WORDS);
    if (fast === undefined) continue;
    accepted++;
    const lib = treeFromEvents(text);
    assert.deepEqual(lib.problems, [], path);
    assert.deepEqual(fast, lib.root, path);
  }
  assert.ok(accepted >= 50, `the fast parser took ${accepted} files`);
});

Deno.test("corpus: the positioned tree holds what js-yaml's own load reads, on every file", () => {
  let compared = 0;
  for (const path of [...filesOf("bad"), ...filesOf("good")]) {
    const text = readText(path).replace(/^\uFEFF/, "");
    const tree = parseYamlTree(text);
    let expected: unknown;
    try {
      expected = load(text);
    } catch {
      continue; // a YAML error (or a duplicate key, which the validator reports)
    }
    if (tree.root === null && tree.problems.length) continue; // past a limit of ours
    compared++;
    assert.deepEqual(treeAsJs(tree.root), expected ?? null, path);
  }
  assert.ok(compared >= 60, `${compared} files compared`);
});
