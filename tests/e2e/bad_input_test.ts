/**
 * Bad input, as a careless or hostile user gives it:
 * - `check`, `run`, `explain` and a reload read every file of the corpus
 *   (tests/policies/) through one reader: each accepts or refuses it alike,
 *   with the same diagnostics;
 * - random mutations of valid files and random byte strings give exit code 0
 *   or 2 and one-line diagnostics, never a stack trace or a hang.
 */
import assert from "node:assert/strict";
import { main } from "../../main.ts";
import { mulberry32 } from "../../lib/policy/compile/classes.ts";
import { AgentProcess } from "../helpers/agent_process.ts";
import { ROOT, withTopology } from "../helpers/topology.ts";

const CORPUS = `${ROOT}tests/policies/`;

function corpusFiles(kind: "bad" | "good"): string[] {
  return [...Deno.readDirSync(CORPUS + kind)]
    .filter((e) => e.isFile && e.name.endsWith(".yaml"))
    .map((e) => `${CORPUS}${kind}/${e.name}`)
    .sort();
}

/** Every diagnostic line about `path` in `output` (`PATH:L:C: error: ...`), in order. */
function diagnostics(output: string, path: string): string[] {
  const out: string[] = [];
  for (const line of output.split("\n")) {
    const at = line.indexOf(`${path}:`);
    if (at >= 0 && / (error|warning): /.test(line)) out.push(line.slice(at));
    else if (at >= 0 && line.slice(at + path.length).startsWith(": error:")) {
      out.push(line.slice(at));
    }
  }
  return out;
}

/** `tinyfw ARGS` in this process: exit code and what it printed. */
async function inProcess(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const [error, log] = [console.error, console.log];
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  try {
    const code = await main(args);
    return { code, stdout: out.join("\n"), stderr: err.join("\n") };
  } finally {
    [console.error, console.log] = [error, log];
  }
}

/** `tinyfw ARGS` as a user runs it (`deno run main.ts`), in a process of its own. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", `${ROOT}main.ts`, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: r.code, stdout: text(r.stdout), stderr: text(r.stderr) };
}

Deno.test("bad input: check, run and explain agree on every corpus file", async () => {
  const files = [...corpusFiles("bad"), ...corpusFiles("good")];
  // One at a time: `run` takes the namespace's agent lock.
  for (const path of files) {
    const check = await inProcess(["check", "--policy", path]);
    assert.ok(check.code === 0 || check.code === 2, `${path}: check exited ${check.code}`);
    const want = diagnostics(check.stderr, path);
    // `run`: the file is read before anything else; an interface that does not exist then
    // stops a valid one, after its warnings (exit 2 either way, nothing attached).
    const run = await cli(["--iface", "tfwnone0", "--policy", path]);
    assert.equal(run.code, 2, `${path}: run exited ${run.code}:\n${run.stderr}`);
    assert.deepEqual(diagnostics(run.stderr, path), want, `${path}: run's diagnostics`);
    if (check.code === 0) {
      assert.match(run.stderr, /There is no network interface named "tfwnone0"/, path);
    } else {
      assert.match(run.stderr, /^tinyfw: (The policy file|Cannot read)/m, path);
    }
    // `explain` needs a policy by name when the file has several: only the refused files.
    if (check.code === 2) {
      const explain = await inProcess(["explain", "--policy", path, "--proto", "tcp"]);
      assert.equal(explain.code, 2, `${path}: explain exited ${explain.code}`);
      assert.deepEqual(diagnostics(explain.stderr, path), want, `${path}: explain's diagnostics`);
    }
  }
});

Deno.test("bad input: a reload refuses every bad corpus file with check's errors, and keeps the policy", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-bad-reload-" });
  const file = `${dir}/policy.yaml`;
  const good =
    "policies:\n  - name: p\n    rules:\n      - {action: deny, protocol: tcp, ports: [81]}\n";
  try {
    await withTopology(async ({ server, iface }) => {
      await Deno.writeTextFile(file, good);
      const agent = AgentProcess.start(["--iface", iface, "--policy", file], server);
      try {
        await agent.waitFor(/attached to/);
        let rejected = 0;
        for (const bad of corpusFiles("bad")) {
          const check = await inProcess(["check", "--policy", bad]);
          if (check.code === 0) continue; // only warnings: a reload would take it
          const before = agent.log.length;
          await Deno.writeFile(`${file}.tmp`, await Deno.readFile(bad));
          await Deno.rename(`${file}.tmp`, file);
          // The change of the file reloads it (once: the watch reports content changes).
          await agent.waitForCount(/policy reload \([^)]*\) rejected/g, ++rejected);
          const errors = diagnostics(check.stderr, bad).filter((l) => / error: /.test(l))
            .map((l) => l.replace(bad, file));
          const log = agent.log.slice(before);
          const logged = diagnostics(log, file).filter((l) => / error: /.test(l));
          assert.deepEqual(logged, errors, `reload of ${bad}`);
          // A file refused as a whole (not UTF-8...): the same sentence as check's.
          const whole = /^tinyfw: (.*)\.$/m.exec(check.stderr);
          if (errors.length === 0 && whole) {
            const sentence = whole[1].replace(bad, file);
            const lower = sentence.charAt(0).toLowerCase() + sentence.slice(1);
            assert.ok(log.includes(`rejected: ${lower};`), `reload of ${bad}: ${log}`);
          }
        }
        assert.ok(rejected >= 60, `${rejected} bad files refused`);
        assert.equal(agent.count(/policy reloaded/g), 0, "a bad file was taken");
        assert.equal(await agent.stop(), 0, agent.log);
      } finally {
        await agent.dispose();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A line `check` may print on stderr: a diagnostic, its sentence, or a detail. */
const CHECK_LINE =
  /^(tinyfw: [^\n]+| {2}\S+(:\d+:\d+)?: error: [^\n]+|\S+(:\d+:\d+)?: (error|warning): [^\n]+)$/;

function assertClean(r: { code: number; stderr: string }, what: string): void {
  assert.ok(r.code === 0 || r.code === 2, `${what}: exit ${r.code}\n${r.stderr}`);
  for (const line of r.stderr.split("\n")) {
    if (line === "") continue;
    assert.match(line, CHECK_LINE, `${what}: ${line}`);
    assert.doesNotMatch(line, /\bat .*:\d+:\d+\)?$|undefined|\[object |NaN/, `${what}: ${line}`);
  }
}

Deno.test("bad input: mutated files and random bytes give exit 0 or 2 and one-line diagnostics", async () => {
  const goods = corpusFiles("good").map((p) => Deno.readFileSync(p));
  const rnd = mulberry32(8);
  const int = (n: number) => Math.floor((rnd() / 2 ** 32) * n);
  const pick = <T>(a: readonly T[]) => a[int(a.length)];
  const bits = [
    ..."\n -:#'\"[]{},&*!|>?%@`\t\r\\".split("").map((c) => new TextEncoder().encode(c)),
    new TextEncoder().encode("\u202e"),
    new TextEncoder().encode("\u200b"),
    new Uint8Array([0xff]),
    new Uint8Array([0xc3]),
    new Uint8Array([0]),
    new TextEncoder().encode("%YAML 1.1\n---\n"),
    new TextEncoder().encode(" 0120"),
    new TextEncoder().encode(" 1e3"),
    new TextEncoder().encode(" *nope"),
    new TextEncoder().encode("[[[[[[[[[["),
  ];
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-fuzz-" });
  const samples: Uint8Array[] = [];
  try {
    for (let t = 0; t < 1500; t++) {
      let s = pick(goods);
      for (let k = 1 + int(5); k > 0; k--) {
        const p = int(s.length + 1);
        const cut = int(4);
        const add = rnd() < 0.6 ? pick(bits) : new Uint8Array(0);
        const next = new Uint8Array(s.length - Math.min(cut, s.length - p) + add.length);
        next.set(s.subarray(0, p), 0);
        next.set(add, p);
        next.set(s.subarray(Math.min(s.length, p + cut)), p + add.length);
        s = next;
      }
      samples.push(s);
    }
    for (let t = 0; t < 500; t++) {
      samples.push(crypto.getRandomValues(new Uint8Array(int(400))));
    }
    let i = 0;
    for (const sample of samples) {
      const path = `${dir}/f${i++}.yaml`;
      await Deno.writeFile(path, sample);
      assertClean(await inProcess(["check", "--policy", path]), path);
    }
    // A few through the command line itself: what the runtime would print on an escape.
    for (const sample of samples.filter((_, k) => k % 100 === 0)) {
      const path = `${dir}/cli.yaml`;
      await Deno.writeFile(path, sample);
      const r = await cli(["check", "--policy", path]);
      assertClean(r, JSON.stringify(new TextDecoder().decode(sample)));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
