/**
 * The layering of docs/ARCHITECTURE.md, checked on the code: every import of
 * `lib/` and `main.ts` that leaves its folder goes to that folder's `mod.ts`
 * and to a lower layer, and no files import each other in a cycle.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;

/** The layer of each folder (docs/ARCHITECTURE.md): imports go to lower numbers only. */
const LAYERS: Record<string, number> = {
  "main.ts": 9,
  "lib/commands": 8,
  "lib/agent": 7,
  "lib/containers": 6,
  "lib/persist": 5,
  "lib/datapath": 4,
  "lib/model": 3,
  "lib/cli": 3,
  "lib/policy": 2,
  "lib/netlink": 2,
  "lib/containerd": 2,
  "lib/abi": 1,
  "lib/ffi": 1,
  "lib/net": 1,
  "lib/base": 1,
};

/** Inside lib/policy/: the same rule between its parts. */
const POLICY_LAYERS: Record<string, number> = {
  "lib/policy": 5, // load.ts and mod.ts
  "lib/policy/compile": 4,
  "lib/policy/validate": 3,
  "lib/policy/yaml": 2,
  "lib/policy/model": 1,
};

function sources(): string[] {
  const out = ["main.ts"];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) walk(path);
      else if (e.name.endsWith(".ts")) out.push(path);
    }
  };
  walk("lib");
  return out;
}

/** The repository-relative files `file` imports (or re-exports from). */
function importsOf(file: string): string[] {
  const text = Deno.readTextFileSync(`${ROOT}${file}`);
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) : "";
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\b[^;]*?\sfrom\s+"(\.{1,2}\/[^"]+)"/gms)) {
    const parts = (dir ? `${dir}/${m[1]}` : m[1]).split("/");
    const path: string[] = [];
    for (const p of parts) {
      if (p === "..") path.pop();
      else if (p !== ".") path.push(p);
    }
    out.push(path.join("/"));
  }
  return out;
}

function topFolder(file: string): string {
  return file === "main.ts" ? "main.ts" : file.split("/").slice(0, 2).join("/");
}

function policyPart(file: string): string {
  const parts = file.split("/");
  return parts.length > 3 ? parts.slice(0, 3).join("/") : "lib/policy";
}

Deno.test("architecture: imports leave a folder only through its mod.ts, and only downward", () => {
  const files = sources();
  const problems: string[] = [];
  let crossing = 0;
  for (const file of files) {
    for (const target of importsOf(file)) {
      if (!target.startsWith("lib/")) continue; // deno.json, the XDP object
      const [from, to] = [topFolder(file), topFolder(target)];
      if (from !== to) {
        crossing++;
        if (target !== `${to}/mod.ts`) problems.push(`${file} imports ${target}, not ${to}/mod.ts`);
        if (!(LAYERS[from] > LAYERS[to])) {
          problems.push(`${file} (layer ${LAYERS[from]}) imports ${to} (layer ${LAYERS[to]})`);
        }
      } else if (from === "lib/policy") {
        const [pf, pt] = [policyPart(file), policyPart(target)];
        if (pf === pt) continue;
        if (pt !== "lib/policy" && target !== `${pt}/mod.ts`) {
          problems.push(`${file} imports ${target}, not ${pt}/mod.ts`);
        }
        if (!(POLICY_LAYERS[pf] > POLICY_LAYERS[pt])) {
          problems.push(`${file} imports ${target}: ${pf} may not import ${pt}`);
        }
      }
    }
  }
  for (const folder of new Set(files.map(topFolder))) {
    assert.ok(folder in LAYERS, `${folder} has no layer in docs/ARCHITECTURE.md`);
  }
  assert.deepEqual(problems, []);
  assert.ok(crossing > 100, `only ${crossing} imports between folders`);
});

Deno.test("architecture: no files import each other in a cycle", () => {
  const files = sources();
  const edges = new Map(files.map((f) => [f, importsOf(f).filter((t) => t.startsWith("lib/"))]));
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (f: string): string[] | null => {
    if (state.get(f) === "done") return null;
    if (state.get(f) === "open") return [...path.slice(path.indexOf(f)), f];
    state.set(f, "open");
    path.push(f);
    for (const t of edges.get(f) ?? []) {
      const cycle = visit(t);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(f, "done");
    return null;
  };
  for (const f of files) assert.equal(visit(f)?.join(" -> ") ?? null, null);
});
