/**
 * Restarts on a host interface, end to end: an agent killed with SIGKILL
 * under a flood leaves its filter enforcing; `tinyfw status` reports it from
 * the pins (and checks it against the kernel) while one runs and after the
 * kill; the next agent adopts it with no gap, no second program and counters
 * that continue; pins of another layout are refused; `tinyfw detach` removes
 * everything and refuses while an agent runs.
 */
import assert from "node:assert/strict";
import { AgentProcess, countedAtExit, testPinPath, tinyfw } from "../helpers/agent_process.ts";
import { programExists } from "../helpers/inspect.ts";
import type { Netns } from "../helpers/netns.ts";
import {
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
import { StateFiles } from "../../lib/persist/state.ts";

const POLICY = `policies:
  - name: hosts
    rules:
      - name: discard
        action: deny
        protocol: udp
        ports: [9]
      - name: web
        action: allow
        protocol: tcp
        ports: [8080]
`;

async function withPolicy(fn: (file: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-restart-" });
  try {
    await Deno.writeTextFile(`${dir}/policy.yaml`, POLICY);
    await fn(`${dir}/policy.yaml`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

interface StatusJson {
  agent: { running: boolean; pid: number | null };
  state: { keepOnExit: boolean } | null;
  attachments: {
    record: { kind: string; iface: string; mode: string; policy: string };
    kernel: {
      link?: { id: number; progId: number };
      attachedProgId?: number;
      learnerProgId?: number | null;
      inForce?: { generation: number; slot: number; policy: string };
    };
    problems: string[];
  }[];
  counters: { policy: string; rule: string | null; direction: string; packets: number }[];
  problems: string[];
}

async function statusOf(pinPath: string, ns: Netns): Promise<{ json: StatusJson; text: string }> {
  const j = await tinyfw(["status", "--pin-path", pinPath, "--json"], ns);
  assert.equal(j.code, 0, j.stderr);
  const t = await tinyfw(["status", "--pin-path", pinPath], ns);
  assert.equal(t.code, 0, t.stderr);
  return { json: JSON.parse(j.stdout), text: t.stdout };
}

function packetsOf(s: StatusJson, rule: string): number {
  return s.counters.filter((c) => c.policy === "hosts" && c.rule === rule)
    .reduce((n, c) => n + c.packets, 0);
}

/** Resolves once the agent using `pinPath` has recorded an attachment. */
async function recorded(pinPath: string): Promise<void> {
  const files = new StateFiles(pinPath);
  for (let i = 0; i < 500 && !files.read()?.attachments.length; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(files.read()?.attachments.length, "no attachment was recorded");
}

/** The tc filters on `iface`'s egress hook in `ns`. */
async function egressFilters(ns: Netns, iface: string): Promise<number> {
  const out = (await ns.exec(["tc", "filter", "show", "dev", iface, "egress"])).stdout;
  return out.split("\n").filter((l) => / handle 0x/.test(l)).length;
}

Deno.test("restart: SIGKILL under a denied flood keeps filtering; the next agent adopts with no gap, once, counters continuing", async () => {
  await withPolicy(async (file) => {
    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { tcp: [8080], udp: [9, 5353] });
      const args = ["--iface", iface, "--policy", file, "--log-format", "json"];
      const first = AgentProcess.start(args, server);
      let second: AgentProcess | undefined;
      let flood: Flood | undefined;
      try {
        await first.waitFor(/attached to/);
        flood = await startFlood(client, SERVER4, 9);
        const running = await statusOf(first.pinPath, server);
        assert.equal(running.json.agent.running, true);
        assert.equal(running.json.agent.pid, first.child.pid);
        assert.match(running.text, new RegExp(`agent: running \\(pid ${first.child.pid}\\)`));

        await new Promise((r) => setTimeout(r, 300));
        await first.stop("SIGKILL");
        const left = xdpOf(server, iface);
        assert.notEqual(left.mode, "none", "the killed agent's filter is gone");

        // While no agent runs: denied traffic stays dropped (the flood), allowed traffic passes.
        assert.equal(
          await reach(client, "tcp", SERVER4, 8080),
          true,
          "TCP 8080 blocked while down",
        );
        assert.equal(
          await reach(client, "udp", SERVER6, 5353),
          true,
          "UDP 5353 blocked while down",
        );
        const down = await statusOf(first.pinPath, server);
        assert.equal(down.json.agent.running, false);
        assert.equal(down.json.attachments.length, 1);
        const [a] = down.json.attachments;
        assert.equal(a.record.iface, iface);
        assert.equal(a.record.policy, "hosts");
        assert.equal(a.kernel.link?.progId, left.progId, "status shows another program");
        assert.equal(a.kernel.attachedProgId, left.progId);
        assert.equal(a.kernel.inForce?.policy, "hosts");
        assert.deepEqual([...a.problems, ...down.json.problems], []);
        const whileDown = packetsOf(down.json, "discard");
        assert.ok(whileDown > 0, "status counted nothing for discard");
        assert.match(down.text, /agent: not running; its filters stay as it left them/);
        assert.match(
          down.text,
          new RegExp(
            `interface ${iface}: ${left.mode}, program ${left.progId}, link \\d+, policy hosts, generation [01]`,
          ),
        );
        assert.match(down.text, /hosts\/discard ingress deny: [\d,]+ packets/);
        assert.match(down.text, /the records and the kernel agree/);

        second = AgentProcess.start(args, server);
        await second.waitFor(/adopted/);
        assert.match(second.log, /found the pins of an earlier run/);
        const now = xdpOf(server, iface);
        assert.equal(now.mode, left.mode, "the mode changed on adoption");
        assert.notEqual(now.progId, left.progId, "the link still runs the killed agent's program");
        assert.equal(
          programExists(left.progId),
          false,
          "the killed agent's program is still loaded",
        );
        assert.equal(await egressFilters(server, iface), 1, "the flow learner is not single");
        const adopted = await statusOf(second.pinPath, server);
        assert.equal(adopted.json.agent.pid, second.child.pid);
        assert.equal(adopted.json.attachments.length, 1);
        assert.equal(adopted.json.attachments[0].kernel.link?.progId, now.progId);
        assert.equal(
          adopted.json.attachments[0].kernel.link?.id,
          a.kernel.link?.id,
          "the link was replaced, not updated",
        );
        assert.ok(packetsOf(adopted.json, "discard") >= whileDown, "the counters started over");
        assert.deepEqual(adopted.json.problems, []);

        await new Promise((r) => setTimeout(r, 300));
        const { sent, received } = await flood.stop();
        flood = undefined;
        assert.ok(sent > 500n, `only ${sent} datagrams were sent`);
        assert.equal(received, 0n, `${received} of ${sent} denied datagrams got through`);
        assert.equal(await second.stop("SIGTERM"), 0, second.log);
        // Every datagram, before, during and after the handover, counted once.
        const counted = countedAtExit(second.log, "hosts", "discard");
        console.log(
          `${sent} datagrams to a denied port across SIGKILL, downtime and adoption: ` +
            `${received} got through, ${counted} counted`,
        );
        assert.equal(counted, sent);
        assert.equal(xdpOf(server, iface).mode, "none");
        assert.equal(await egressFilters(server, iface), 0);
        assert.throws(() => Deno.statSync(second!.pinPath), Deno.errors.NotFound);
        assert.equal(new StateFiles(second.pinPath).read(), null, "the state files are left");
      } finally {
        await flood?.kill();
        await first.stop("SIGKILL");
        await (second ?? first).dispose(); // the pins are the same
      }
    });
  });
});

Deno.test("restart: status without pins says so; pins of another map layout are refused in one sentence, touching nothing", async () => {
  await withPolicy(async (file) => {
    await withTopology(async ({ server, iface }) => {
      const none = await statusOf(testPinPath(server), server);
      assert.deepEqual(none.json.attachments, []);
      assert.match(none.text, /nothing is pinned under/);
      const first = AgentProcess.start(["--iface", iface, "--policy", file], server);
      try {
        await first.waitFor(/attached to/);
        await recorded(first.pinPath);
        await first.stop("SIGKILL");
        const left = xdpOf(server, iface);
        // What an older or newer tinyfw with other maps would have recorded.
        const files = new StateFiles(first.pinPath);
        for (const name of ["attachments.json", "policies.json"]) {
          const path = `${files.dir}/${name}`;
          const rec = JSON.parse(Deno.readTextFileSync(path));
          rec.header.layout = "0123456789abcdef";
          Deno.writeTextFileSync(path, JSON.stringify(rec));
        }
        const second = AgentProcess.start(["--iface", iface, "--policy", file], server);
        assert.equal(await second.exitCode(), 1, second.log);
        assert.match(
          second.log,
          /another map layout \(0123456789abcdef, this one's is [0-9a-f]{16}\)/,
        );
        assert.equal(second.log.trim().split("\n").length, 1, second.log);
        assert.equal(xdpOf(server, iface).progId, left.progId, "the filter was touched");
        const s = await statusOf(first.pinPath, server);
        assert.match(s.text, /layout 0123456789abcdef, not this tinyfw's/);
      } finally {
        await first.dispose();
      }
    });
  });
});

Deno.test("detach: refused while an agent runs; afterwards no link, program, tc filter, pin or state is left", async () => {
  await withPolicy(async (file) => {
    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { udp: [9] });
      const agent = AgentProcess.start(
        ["--iface", iface, "--policy", file, "--keep-on-exit"],
        server,
      );
      try {
        await agent.waitFor(/attached to/);
        const refused = await tinyfw(["detach", "--pin-path", agent.pinPath], server);
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, new RegExp(`agent \\(pid ${agent.child.pid}\\) is running`));
        assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
        assert.notEqual(xdpOf(server, iface).mode, "none", "the refused detach detached");

        // --keep-on-exit: SIGTERM leaves the filter, recorded for the next agent.
        assert.equal(await agent.stop("SIGTERM"), 0, agent.log);
        const kept = xdpOf(server, iface);
        assert.notEqual(kept.mode, "none", "--keep-on-exit detached");
        assert.equal(
          await reach(client, "udp", SERVER4, 9),
          false,
          "the kept filter lets UDP 9 in",
        );
        const s = await statusOf(agent.pinPath, server);
        assert.equal(s.json.state?.keepOnExit, true);
        const linkId = s.json.attachments[0].kernel.link?.id;
        assert.ok(linkId, "no pinned link");

        const done = await tinyfw(["detach", "--pin-path", agent.pinPath], server);
        assert.equal(done.code, 0, done.stderr);
        assert.match(
          done.stdout,
          /detached 1 XDP filter \(1 held by a pinned link, 0 attached by netlink\) and 1 flow learner; removed the pins/,
        );
        assert.equal(done.stderr, "");
        assert.equal(xdpOf(server, iface).mode, "none", "an XDP program is left");
        assert.equal(programExists(kept.progId), false, "the program is still loaded");
        assert.equal(await egressFilters(server, iface), 0, "a tc filter is left");
        const links = await server.exec(["bpftool", "link", "show", "id", String(linkId)], {
          allowFailure: true,
        });
        assert.notEqual(links.code, 0, `the link is left: ${links.stdout}`);
        assert.throws(() => Deno.statSync(agent.pinPath), Deno.errors.NotFound);
        assert.throws(() => Deno.statSync(new StateFiles(agent.pinPath).dir), Deno.errors.NotFound);
        assert.equal(await reach(client, "udp", SERVER4, 9), true, "UDP 9 still dropped");

        const again = await tinyfw(["detach", "--pin-path", agent.pinPath], server);
        assert.equal(again.code, 0);
        assert.match(again.stdout, /nothing of tinyfw's was left under/);

        // After SIGKILL, detach takes the namespace's lock file the agent left too.
        const killed = AgentProcess.start(["--iface", iface, "--policy", file], server);
        try {
          await killed.waitFor(/attached to/);
          await killed.stop("SIGKILL");
          const lock = `/run/tinyfw/agent-netns-${Deno.statSync(server.path).ino}.lock`;
          assert.ok(Deno.statSync(lock).isFile, "the killed agent left no lock file");
          const d = await tinyfw(["detach", "--pin-path", killed.pinPath], server);
          assert.equal(d.code, 0, d.stderr);
          assert.equal(xdpOf(server, iface).mode, "none");
          assert.throws(() => Deno.statSync(lock), Deno.errors.NotFound);
        } finally {
          await killed.dispose();
        }
      } finally {
        await agent.dispose();
      }
    });
  });
});

Deno.test("restart: a tinyfw program attached without a link (an older version's) is replaced, not doubled", async () => {
  await withTopology(async ({ server, iface }) => {
    await server.ip(
      "link",
      "set",
      "dev",
      iface,
      "xdpgeneric",
      "obj",
      `${ROOT}bpf/tinyfw.bpf.o`,
      "sec",
      "xdp",
    );
    const left = xdpOf(server, iface);
    assert.equal(left.mode, "generic");
    const agent = AgentProcess.start(["--iface", iface], server);
    try {
      await agent.waitFor(/attached to .* in generic mode/);
      assert.match(agent.log, new RegExp(`replacing the tinyfw program \\(id ${left.progId}\\)`));
      const now = xdpOf(server, iface);
      assert.equal(now.mode, "generic");
      assert.notEqual(now.progId, left.progId);
      assert.equal(programExists(left.progId), false);
      assert.equal(await agent.stop("SIGINT"), 0, agent.log);
      assert.equal(xdpOf(server, iface).mode, "none");
    } finally {
      await agent.dispose();
    }
  });
});
