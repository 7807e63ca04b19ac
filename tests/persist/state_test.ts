/** The state recorded beside the pins: written atomically, read back, refused when damaged. */
import assert from "node:assert/strict";
import { layoutId, StateError, StateFiles, type StateHeader } from "../../lib/persist/state.ts";

function header(): StateHeader {
  return {
    format: 1,
    layout: layoutId(),
    version: "0.1.0",
    pid: 1,
    lock: "/run/tinyfw/x.lock",
    pinPath: "/sys/fs/bpf/t",
    keepOnExit: false,
    written: new Date(0).toISOString(),
  };
}

async function withRoot(fn: (root: string) => void | Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "tinyfw-state-" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("state: what is written is read back; removal leaves no directory behind", () =>
  withRoot((root) => {
    const files = new StateFiles("/sys/fs/bpf/t", root);
    assert.equal(files.read(), null, "nothing recorded yet");
    const policy = {
      slot: 3,
      policy: "web",
      defaultAction: "deny" as const,
      counterBase: 10,
      counterCount: 4,
      rules: [{ name: "http", action: "allow" as const }],
      fastTables: [],
    };
    const carried = [{
      policy: "web",
      rule: "http",
      action: "allow" as const,
      direction: "ingress" as const,
      packets: "18446744073709551615",
      bytes: "1",
    }];
    files.writePolicies(header(), [policy], carried);
    files.writeAttachments(header(), [{
      kind: "veth",
      attachId: 7,
      ifindex: 12,
      iface: "veth0",
      mode: "generic",
      policy: "web",
    }]);
    const state = files.read()!;
    assert.deepEqual(state.policies, [policy]);
    assert.deepEqual(state.carried, carried, "counts beyond 2^53 survive as strings");
    assert.equal(state.attachments.length, 1);
    assert.equal(state.header.layout, layoutId());
    // Atomic writes leave no temporary file beside them.
    assert.deepEqual([...Deno.readDirSync(files.dir)].map((e) => e.name).sort(), [
      "attachments.json",
      "policies.json",
    ]);
    assert.equal(files.remove(), true);
    assert.deepEqual([...Deno.readDirSync(root)], [], "empty parents are removed too");
    assert.equal(files.remove(), false);
  }));

Deno.test("state: a damaged file is a StateError naming it", () =>
  withRoot((root) => {
    const files = new StateFiles("/p", root);
    Deno.mkdirSync(files.dir, { recursive: true });
    Deno.writeTextFileSync(files.policiesPath, '{"header": ');
    assert.throws(() => files.read(), (e) =>
      e instanceof StateError && e.message.includes("policies.json"));
    Deno.writeTextFileSync(files.policiesPath, '{"policies": []}');
    assert.throws(() =>
      files.read(), (e) =>
      e instanceof StateError && /no tinyfw state header/.test(e.message));
  }));
