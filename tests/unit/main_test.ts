/** The entry point's handling of what this version cannot do yet, and of usage errors. */
import assert from "node:assert/strict";
import { main } from "../../main.ts";

async function quietly(args: string[]): Promise<{ code: number; stderr: string }> {
  const lines: string[] = [];
  const error = console.error;
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    return { code: await main(args), stderr: lines.join("\n") };
  } finally {
    console.error = error;
  }
}

Deno.test("main: flags of later versions and unreadable files are refused with exit 2, before anything is touched", async () => {
  for (
    const [args, flag] of [
      [["--cmode"], "--cmode"],
      [["--iface", "lo", "--keep-on-exit"], "--keep-on-exit"],
      [["--iface", "lo", "--metrics-addr", ":9100"], "--metrics-addr"],
      [["--iface", "lo", "--policy", "/nonexistent.yaml"], "Cannot read the policy file"],
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
