/** The one-agent-per-network-namespace lock (a temporary directory stands in for /run/tinyfw). */
import assert from "node:assert/strict";
import { lockNetns } from "../../lib/agent/lock.ts";

Deno.test("agent lock: held once per network namespace, free again once released", () => {
  const dir = Deno.makeTempDirSync({ prefix: "tinyfw-lock-" });
  try {
    const first = lockNetns(dir);
    assert.equal(Deno.readTextFileSync(first.path).trim(), String(Deno.pid));
    assert.throws(
      () => lockNetns(dir),
      new RegExp(`Another tinyfw agent \\(pid ${Deno.pid}\\) is running in this network namespace`),
    );
    first.release();
    first.release(); // idempotent
    assert.throws(() => Deno.statSync(first.path), Deno.errors.NotFound, "removed on release");
    const again = lockNetns(dir);
    again.release();
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing left");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
