/**
 * End to end on a host interface: two network namespaces joined by a veth pair,
 * the agent started as a user starts it inside the "server" namespace with
 * `--iface`, real connections from the "client" namespace.
 */
import assert from "node:assert/strict";
import { run } from "../helpers/netns.ts";
import { AgentProcess } from "../helpers/agent_process.ts";
import { attachedRuleCount } from "../helpers/inspect.ts";
import { defaultPolicy } from "../../lib/policy/model/default.ts";
import {
  ping,
  reach,
  ROOT,
  SERVER4,
  SERVER6,
  startServer,
  withTopology,
  xdpOf,
} from "../helpers/topology.ts";

Deno.test("e2e: default policy on a host interface drops TCP 80, passes the rest, detaches on SIGTERM", async () => {
  await withTopology(async ({ server, client, iface }) => {
    await startServer(server, { tcp: [80, 8080], udp: [5353] });
    // Without the agent, port 80 answers: the test can see a difference.
    assert.equal(await reach(client, "tcp", SERVER4, 80), true, "port 80 unreachable before start");

    const agent = AgentProcess.start(["--iface", iface], server);
    try {
      await agent.waitFor(new RegExp(`attached to ${iface} in (native|generic) mode`));
      assert.notEqual(xdpOf(server, iface).mode, "none");

      const policy = defaultPolicy();
      const http = policy.rules.findIndex((r) => r.ports?.some((p) => p.from <= 80 && 80 <= p.to));
      const progId = xdpOf(server, iface).progId;
      const before = attachedRuleCount(progId, policy.rules.length, http);

      assert.equal(await reach(client, "tcp", SERVER4, 80), false, "TCP 80 over IPv4 connected");
      assert.equal(await reach(client, "tcp", SERVER6, 80), false, "TCP 80 over IPv6 connected");
      assert.equal(await reach(client, "tcp", SERVER4, 8080), true, "TCP 8080 over IPv4 failed");
      assert.equal(await reach(client, "tcp", SERVER6, 8080), true, "TCP 8080 over IPv6 failed");
      assert.equal(await reach(client, "udp", SERVER4, 5353), true, "UDP over IPv4 failed");
      assert.equal(await reach(client, "udp", SERVER6, 5353), true, "UDP over IPv6 failed");
      assert.equal(await ping(client, SERVER4), true, "ICMP echo failed");
      assert.equal(await ping(client, SERVER6), true, "ICMPv6 echo failed");

      const after = attachedRuleCount(progId, policy.rules.length, http);
      // Two connects, each a SYN and its retransmissions.
      assert.ok(after - before >= 2n, `the port-80 rule counted ${after - before} packets`);

      assert.equal(await agent.stop("SIGTERM"), 0, agent.log);
      assert.equal(xdpOf(server, iface).mode, "none", "an XDP program is left after SIGTERM");
      assert.match(agent.log, new RegExp(`detached from ${iface}`));
      // And the filter is really gone.
      assert.equal(
        await reach(client, "tcp", SERVER4, 80),
        true,
        "port 80 still blocked after exit",
      );
    } finally {
      await agent.dispose();
    }
  });
});

Deno.test("e2e: a foreign XDP program makes the agent refuse (exit 1) and stays in place", async () => {
  await withTopology(async ({ server, iface }) => {
    await run([
      "ip",
      "-n",
      server.name,
      "link",
      "set",
      "dev",
      iface,
      "xdpgeneric",
      "obj",
      `${ROOT}bpf/bench_empty.bpf.o`,
      "sec",
      "xdp",
    ]);
    const foreign = xdpOf(server, iface);
    assert.equal(foreign.mode, "generic");

    const agent = AgentProcess.start(["--iface", iface], server);
    const code = await agent.exitCode();
    assert.equal(code, 1, agent.log);
    assert.match(agent.log, /already has an XDP program that tinyfw did not install/);
    assert.match(agent.log, new RegExp(`id ${foreign.progId}`));
    assert.equal(agent.log.trim().split("\n").length, 1, `more than one line:\n${agent.log}`);
    assert.equal(xdpOf(server, iface).progId, foreign.progId, "the foreign program was touched");
  });
});

Deno.test("e2e: an unknown interface exits 2 with one clear line, attaching nothing", async () => {
  await withTopology(async ({ server, iface }) => {
    const agent = AgentProcess.start(["--iface", iface, "--iface", "tfw-nosuch0"], server);
    assert.equal(await agent.exitCode(), 2, agent.log);
    assert.match(agent.log, /no network interface named "tfw-nosuch0"/);
    assert.equal(agent.log.trim().split("\n").length, 1, `more than one line:\n${agent.log}`);
    assert.equal(xdpOf(server, iface).mode, "none", "the valid interface got a program anyway");
  });
});

Deno.test("e2e: without BPF privileges the agent says so and exits 1", async () => {
  await withTopology(async ({ server, iface }) => {
    // Root without any capability: what an unprivileged container or user has.
    const r = await run(
      [
        "nsenter",
        `--net=${server.path}`,
        "setpriv",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        Deno.execPath(),
        "run",
        "--allow-all",
        "--quiet",
        `${ROOT}main.ts`,
        "--iface",
        iface,
      ],
      { allowFailure: true },
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /needs CAP_BPF and CAP_NET_ADMIN .*run it as root/);
  });
});

Deno.test("e2e: a second agent in the same network namespace exits 1 and changes nothing", async () => {
  await withTopology(async ({ server, iface }) => {
    const first = AgentProcess.start(["--iface", iface], server);
    try {
      await first.waitFor(/attached to/);
      const attached = xdpOf(server, iface);
      const second = AgentProcess.start(["--iface", iface], server);
      assert.equal(await second.exitCode(), 1, second.log);
      assert.match(
        second.log,
        /Another tinyfw agent \(pid \d+\) is running in this network namespace/,
      );
      assert.equal(second.log.trim().split("\n").length, 1, second.log);
      assert.deepEqual(xdpOf(server, iface), attached, "the first agent's program stays");
    } finally {
      assert.equal(await first.stop(), 0, first.log);
    }
    // The lock went with the first agent: a new one starts.
    const third = AgentProcess.start(["--iface", iface], server);
    await third.waitFor(/attached to/);
    assert.equal(await third.stop(), 0, third.log);
    const lockFile = `/run/tinyfw/agent-netns-${Deno.statSync(server.path).ino}.lock`;
    assert.throws(() => Deno.statSync(lockFile), Deno.errors.NotFound, "the lock file is removed");
  });
});
