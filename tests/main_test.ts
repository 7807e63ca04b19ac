/** The entry point's handling of bad input and of usage errors. */
import assert from "node:assert/strict";
import { main } from "../main.ts";

async function quietly(args: string[]): Promise<{ code: number; stderr: string }> {
  const lines: string[] = [];
  const [error, log] = [console.error, console.log];
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  console.log = () => {};
  try {
    return { code: await main(args), stderr: lines.join("\n") };
  } finally {
    [console.error, console.log] = [error, log];
  }
}

Deno.test("main: unreadable policy files are refused with exit 2, before anything is touched", async () => {
  for (
    const [args, flag] of [
      [
        ["--iface", "lo", "--policy", "/nonexistent.yaml"],
        "Cannot read the policy file /nonexistent.yaml: it does not exist",
      ],
    ] as [string[], string][]
  ) {
    const r = await quietly(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.ok(r.stderr.includes(flag), r.stderr);
    assert.equal(r.stderr.split("\n").length, 1, r.stderr);
  }
});

Deno.test("main: a usage error exits 2 with one line", async () => {
  const r = await quietly(["--iface"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^tinyfw: .*--iface/);
});

Deno.test("main: check exits 2 on every malformed corpus file and 0 on every good one", async () => {
  const dir = new URL("./policies/", import.meta.url).pathname;
  let files = 0;
  for (const kind of ["bad", "good"]) {
    for (const entry of Deno.readDirSync(`${dir}${kind}`)) {
      if (!entry.name.endsWith(".yaml")) continue;
      const path = `${dir}${kind}/${entry.name}`;
      const header = Deno.readTextFileSync(path).replace(/^\uFEFF/, "");
      const want = Number(/^# expect-exit: (\d)/m.exec(header)?.[1] ?? (kind === "bad" ? 2 : 0));
      const r = await quietly(["check", "--policy", path]);
      assert.equal(r.code, want, `${kind}/${entry.name}: ${r.stderr}`);
      files++;
    }
  }
  assert.ok(files >= 60, `only ${files} corpus files`);
});
