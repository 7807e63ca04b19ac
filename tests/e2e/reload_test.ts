/**
 * Policy files on a host interface, end to end: reload by SIGHUP and by a
 * change of the file, an invalid file keeping the old policy, and atomicity of
 * the switch under load (no packet that both policies drop ever gets through,
 * and the counters account for every one).
 */
import assert from "node:assert/strict";
import { AgentProcess, countedAtExit } from "../helpers/agent_process.ts";
import { addressMax, portMax } from "../helpers/max_policies.ts";
import {
  CLIENT4,
  CLIENT6,
  type Flood,
  reach,
  ROOT,
  SERVER4,
  SERVER6,
  startFlood,
  startServer,
  withTopology,
  xdpOf,
} from "../helpers/topology.ts";

const RELOADED = /policy reloaded/g;
const REJECTED = /policy reload \([^)]*\) rejected/g;

function denyTcp(port: number): string {
  return `policies:
  - name: hosts
    rules:
      - name: block-${port}
        action: deny
        protocol: tcp
        ports: [${port}]
`;
}

/** Replaces `file` the way configuration tools do: a new file renamed over the old one. */
async function replaceFile(file: string, text: string): Promise<void> {
  await Deno.writeTextFile(`${file}.tmp`, text);
  await Deno.rename(`${file}.tmp`, file);
}

async function withPolicyFile(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-reload-" });
  try {
    await fn(`${dir}/policy.yaml`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("reload: SIGHUP and a change of the file both take effect; an invalid file changes nothing", async () => {
  await withPolicyFile(async (file) => {
    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { tcp: [80, 8080] });
      await Deno.writeTextFile(file, denyTcp(8080));
      const agent = AgentProcess.start(["--iface", iface, "--policy", file], server);
      try {
        await agent.waitFor(/attached to/);
        assert.equal(
          await reach(client, "tcp", SERVER4, 8080),
          false,
          "8080 open under block-8080",
        );
        assert.equal(await reach(client, "tcp", SERVER4, 80), true, "80 closed under block-8080");

        // A change of the file, picked up by the watch.
        await Deno.writeTextFile(file, denyTcp(80));
        await agent.waitForCount(RELOADED, 1);
        assert.match(agent.log, /policy reloaded \(file changed\)/);
        assert.match(agent.log, /policy hosts: 1 added \(block-80\); 1 removed \(block-8080\)/);
        assert.equal(
          await reach(client, "tcp", SERVER6, 80),
          false,
          "80 open after the file changed",
        );
        assert.equal(
          await reach(client, "tcp", SERVER6, 8080),
          true,
          "8080 closed after the change",
        );

        // SIGHUP right after a write: the signal's reload applies it.
        await Deno.writeTextFile(file, denyTcp(8080));
        agent.signal("SIGHUP");
        await agent.waitForCount(RELOADED, 2);
        assert.match(agent.log, /policy reloaded \(SIGHUP\)/);
        assert.equal(await reach(client, "tcp", SERVER4, 8080), false, "8080 open after SIGHUP");
        assert.equal(await reach(client, "tcp", SERVER4, 80), true, "80 closed after SIGHUP");

        // An invalid file: every error logged, the old policy stays, the program is the same.
        const progId = xdpOf(server, iface).progId;
        await Deno.writeTextFile(file, denyTcp(8080).replace("ports: [8080]", "ports: [70000]"));
        await agent.waitForCount(REJECTED, 1);
        agent.signal("SIGHUP");
        await agent.waitForCount(REJECTED, 2);
        assert.match(agent.log, /70000/);
        assert.equal(agent.count(RELOADED), 2, "an invalid file was reloaded");
        assert.equal(xdpOf(server, iface).progId, progId, "the attachment changed");
        assert.equal(await reach(client, "tcp", SERVER4, 8080), false, "old policy lost (8080)");
        assert.equal(await reach(client, "tcp", SERVER4, 80), true, "old policy lost (80)");

        assert.equal(await agent.stop(), 0, agent.log);
      } finally {
        await agent.dispose();
      }
    });
  });
});

/** A policy of `n` CIDR+port rules that match nothing the test sends, plus `discard` (UDP 9). */
function bigPolicy(n: number, discardFirst: boolean, variant: number): string {
  const lines = ["policies:", "  - name: hosts", "    rules:"];
  const discard = [
    "      - name: discard",
    "        action: deny",
    "        protocol: udp",
    "        ports: [9]",
  ];
  if (discardFirst) lines.push(...discard);
  for (let i = 0; i < n; i++) {
    const v = i * 16;
    lines.push(
      `      - name: r${i}`,
      "        action: deny",
      "        protocol: tcp",
      `        ports: [${1000 + ((i + variant) % 50_000)}]`,
      `        cidrs: ["${100 + (v >>> 24)}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}/28"]`,
    );
  }
  if (!discardFirst) lines.push(...discard);
  return lines.join("\n") + "\n";
}

/**
 * A ConfigMap volume as the kubelet writes it (its atomic writer): the data in
 * a timestamped directory, `..data` a symbolic link to it, `policy.yaml` a
 * link through `..data`. An update writes a new directory, points a new link
 * at it, renames that link over `..data` and removes the old directory.
 */
class ConfigMapVolume {
  #n = 0;
  #current?: string;
  constructor(readonly dir: string) {}

  get file(): string {
    return `${this.dir}/policy.yaml`;
  }

  async write(text: string): Promise<void> {
    const ts = `..2026_12_04_00_00_0${this.#n++}.000000001`;
    await Deno.mkdir(`${this.dir}/${ts}`);
    await Deno.writeTextFile(`${this.dir}/${ts}/policy.yaml`, text);
    await Deno.symlink(ts, `${this.dir}/..data_tmp`);
    await Deno.rename(`${this.dir}/..data_tmp`, `${this.dir}/..data`);
    if (this.#current) await Deno.remove(`${this.dir}/${this.#current}`, { recursive: true });
    else await Deno.symlink("..data/policy.yaml", this.file);
    this.#current = ts;
  }
}

Deno.test("reload: a ConfigMap volume's update (the kubelet's ..data symlink swap) reloads the policy", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-configmap-" });
  try {
    const volume = new ConfigMapVolume(dir);
    await volume.write(denyTcp(8080));
    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { tcp: [80, 8080] });
      const agent = AgentProcess.start(["--iface", iface, "--policy", volume.file], server);
      try {
        await agent.waitFor(/attached to/);
        assert.equal(await reach(client, "tcp", SERVER4, 8080), false, "8080 open at start");
        const before = await Deno.realPath(volume.file);
        await volume.write(denyTcp(80));
        assert.notEqual(await Deno.realPath(volume.file), before, "the volume did not swap");
        await agent.waitForCount(RELOADED, 1);
        assert.match(agent.log, /policy reloaded \(file changed\)/);
        assert.equal(await reach(client, "tcp", SERVER4, 80), false, "80 open after the swap");
        assert.equal(await reach(client, "tcp", SERVER4, 8080), true, "8080 closed after the swap");
        // A second update is seen too (the watch follows the directory, not one inode).
        await volume.write(denyTcp(8080));
        await agent.waitForCount(RELOADED, 2);
        assert.equal(await reach(client, "tcp", SERVER4, 8080), false, "8080 open after the 2nd");
        assert.equal(agent.count(RELOADED), 2, "reloaded more than once per update");
        assert.equal(await agent.stop(), 0, agent.log);
      } finally {
        await agent.dispose();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reload: 200 switches between two 10,000-rule policies under load let no dropped packet through", async () => {
  const a = bigPolicy(10_000, true, 0);
  const b = bigPolicy(10_000, false, 7);
  await withPolicyFile(async (file) => {
    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { udp: [9] });
      await Deno.writeTextFile(file, a);
      const agent = AgentProcess.start(
        ["--iface", iface, "--policy", file, "--log-format", "json"],
        server,
      );
      let flood: Flood | undefined;
      try {
        await agent.waitFor(/attached to/, 60_000);
        flood = await startFlood(client, SERVER4, 9);
        for (let i = 1; i <= 200; i++) {
          await replaceFile(file, i % 2 ? b : a);
          agent.signal("SIGHUP");
          await agent.waitForCount(RELOADED, i, 60_000);
        }
        const { sent, received } = await flood.stop();
        flood = undefined;
        assert.ok(sent > 1000n, `only ${sent} datagrams were sent`);
        assert.equal(received, 0n, `${received} of ${sent} datagrams to port 9 got through`);

        assert.equal(await agent.stop(), 0);
        const counted = countedAtExit(agent.log, "hosts", "discard");
        assert.equal(counted, sent, `the discard rule counted ${counted} of ${sent} datagrams`);
        assert.equal(agent.count(/rejected/g), 0);
      } finally {
        await flood?.kill();
        await agent.dispose();
      }
    });
  });
});

Deno.test("reload: a 100,000-rule policy passes check and is reloaded into force", async () => {
  const big = bigPolicy(99_999, false, 3); // with `discard`: 100,000 rules, the most a file holds
  await withPolicyFile(async (file) => {
    await Deno.writeTextFile(`${file}.big`, big);
    const check = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--quiet", `${ROOT}main.ts`, "check", "--policy", `${file}.big`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(check.code, 0, new TextDecoder().decode(check.stderr));
    assert.match(new TextDecoder().decode(check.stdout), /100,000 rules/);

    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { udp: [9] });
      await Deno.writeTextFile(file, denyTcp(8080));
      const agent = AgentProcess.start(["--iface", iface, "--policy", file], server);
      try {
        await agent.waitFor(/attached to/);
        await replaceFile(file, big);
        agent.signal("SIGHUP");
        await agent.waitForCount(RELOADED, 1, 120_000);
        const ms = /policy reloaded \(SIGHUP\) in (\d+) ms/.exec(agent.log);
        assert.ok(ms, agent.log);
        console.log(`100,000-rule reload: ${ms[1]} ms from SIGHUP to switched`);
        assert.equal(await reach(client, "udp", SERVER4, 9), false, "discard (UDP 9) not enforced");
        assert.equal(await agent.stop(), 0, agent.log);
      } finally {
        await agent.dispose();
      }
    });
  });
});

Deno.test("reload: from one maximum-size policy to another under a flood: every switch fits, none leaks", async () => {
  // The capacity contract: each file at a maximum of docs/POLICY.md's limits, and every
  // reload writes the new one beside the one in force before the switch.
  const files = [addressMax(0), portMax(0), addressMax(1), portMax(1)];
  await withPolicyFile(async (file) => {
    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { udp: [9] });
      await Deno.writeTextFile(file, files[0]);
      const agent = AgentProcess.start(
        ["--iface", iface, "--policy", file, "--log-format", "json"],
        server,
      );
      let flood: Flood | undefined;
      try {
        await agent.waitFor(/attached to/, 120_000);
        flood = await startFlood(client, SERVER4, 9);
        for (let i = 1; i < files.length; i++) {
          await replaceFile(file, files[i]);
          agent.signal("SIGHUP");
          await agent.waitForCount(RELOADED, i, 180_000);
        }
        const { sent, received } = await flood.stop();
        flood = undefined;
        assert.ok(sent > 1000n, `only ${sent} datagrams were sent`);
        assert.equal(received, 0n, `${received} of ${sent} datagrams to port 9 got through`);
        assert.equal(agent.count(REJECTED), 0, agent.log);
        const times = [...agent.log.matchAll(/policy reloaded \(SIGHUP\) in (\d+) ms/g)];
        console.log(`maximum-size reloads: ${times.map((t) => t[1]).join(", ")} ms`);

        assert.equal(await agent.stop(), 0);
        const counted = countedAtExit(agent.log, "hosts", "discard");
        assert.equal(counted, sent, `the discard rule counted ${counted} of ${sent} datagrams`);
      } finally {
        await flood?.kill();
        await agent.dispose();
      }
    });
  });
});

Deno.test("agent: defaultAction deny on a host interface still lets the host's own exchanges' replies in", async () => {
  const policy = `policies:
  - name: locked
    defaultAction: deny
    rules:
      - name: web
        action: allow
        protocol: tcp
        ports: [8080]
`;
  await withPolicyFile(async (file) => {
    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { tcp: [8080, 8081] });
      await startServer(client, { tcp: [8081], udp: [5353] });
      await Deno.writeTextFile(file, policy);
      const agent = AgentProcess.start(["--iface", iface, "--policy", file], server);
      try {
        await agent.waitFor(/attached to/);
        // The allowed service answers; the rest of the host is closed.
        assert.equal(await reach(client, "tcp", SERVER4, 8080), true, "allowed 8080 (v4)");
        assert.equal(await reach(client, "tcp", SERVER6, 8080), true, "allowed 8080 (v6)");
        assert.equal(await reach(client, "tcp", SERVER4, 8081), false, "unsolicited 8081 passed");
        // What the server host starts itself gets its replies (learned on egress).
        assert.equal(await reach(server, "tcp", CLIENT4, 8081), true, "own TCP connect (v4)");
        assert.equal(await reach(server, "tcp", CLIENT6, 8081), true, "own TCP connect (v6)");
        assert.equal(await reach(server, "udp", CLIENT4, 5353), true, "own UDP exchange (v4)");
        assert.equal(await reach(server, "udp", CLIENT6, 5353), true, "own UDP exchange (v6)");
        assert.equal(await agent.stop(), 0, agent.log);
        // The sampled drop records name the policy and the default action.
        assert.match(agent.log, /dropped ingress tcp \S+ -> \S+:8081 .* by locked\/\(default\)/);
      } finally {
        await agent.dispose();
      }
    });
  });
});
