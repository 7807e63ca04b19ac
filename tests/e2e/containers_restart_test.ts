/**
 * Containers mode across an agent's SIGKILL and restart (SPEC §5): the
 * containers' filters keep enforcing while no agent runs, `tinyfw status`
 * reports them and notices a container that went meanwhile, and the next
 * agent adopts every side (one program each, no gap under a denied flood,
 * counters continuing), collects what the ended container left and filters
 * the one that started while it was down.
 */
import assert from "node:assert/strict";
import { AgentProcess, countedAtExit, tinyfw } from "../helpers/agent_process.ts";
import {
  type Box,
  cniBox,
  eventually,
  filtered,
  peerXdpName,
  removeAll,
  unfiltered,
  withPolicyFile,
} from "../helpers/boxes.ts";
import { createCniNetwork, deleteCniNetwork } from "../helpers/cni.ts";
import { withContainerd } from "../helpers/containerd.ts";
import { programExists } from "../helpers/inspect.ts";
import { RtnetlinkClient } from "../../lib/netlink/rtnetlink.ts";
import { StateFiles } from "../../lib/persist/state.ts";
import { type Flood, reach, startFlood, startServer, xdpOf } from "../helpers/topology.ts";

const POLICY = `policies:
  - name: web
    selector:
      labels: { app: web }
    defaultAction: deny
    rules:
      - name: discard
        action: deny
        direction: ingress
        protocol: udp
        ports: [9]
      - name: http-in
        action: allow
        direction: ingress
        protocol: tcp
        ports: [8080]
  - name: rest
    rules:
      - name: no-telnet
        action: deny
        protocol: tcp
        ports: [23]
`;

/** The programs on a box's two veth ends: [host end, its own end]. */
function programsOf(box: Box): [number, number] {
  const rtnl = RtnetlinkClient.open();
  try {
    const host = rtnl.getLink(box.hostVeth)?.xdp;
    const peer = xdpOf(box.ns, box.peer);
    return [host?.progId ?? 0, peer.progId];
  } finally {
    rtnl.close();
  }
}

interface SideStatus {
  record: { kind: string; side: string; container: { id: string; name: string } };
  kernel: { link?: { progId: number; defunct: boolean }; inForce?: { policy: string } };
  problems: string[];
}

async function statusOf(pinPath: string) {
  const r = await tinyfw(["status", "--pin-path", pinPath, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as {
    agent: { running: boolean };
    attachments: SideStatus[];
    counters: { policy: string; rule: string | null; packets: number }[];
    problems: string[];
  };
}

Deno.test("cmode restart: SIGKILL keeps every container filtered; the next agent adopts them, collects the one that ended and filters the one that started", async () => {
  await withContainerd(async (cd) => {
    await withPolicyFile(POLICY, async (file) => {
      const net = await createCniNetwork();
      const boxes: Box[] = [];
      const args = [
        "--cmode",
        "--containerd-socket",
        cd.socket,
        "--policy",
        file,
        "--log-format",
        "json",
      ];
      const first = AgentProcess.start(args);
      let second: AgentProcess | undefined;
      let flood: Flood | undefined;
      try {
        const web = await cniBox(cd, net, {
          namespace: "k8s.io",
          labels: { app: "web", "io.kubernetes.container.name": "web-server" },
        });
        boxes.push(web);
        const client = await cniBox(cd, net, { namespace: "default" });
        boxes.push(client);
        const ending = await cniBox(cd, net, { namespace: "default", labels: { app: "web" } });
        boxes.push(ending);
        const stopping = await cniBox(cd, net, { namespace: "default" });
        boxes.push(stopping);
        assert.ok(await eventually(() => boxes.every((b) => filtered(b)), 10_000), first.log);
        await first.waitForCount(/filtering container/g, 4);
        await startServer(web.ns, { tcp: [8080], udp: [9] });
        flood = await startFlood(client.ns, web.ip4, 9);
        await new Promise((r) => setTimeout(r, 300));
        const before = programsOf(web);

        await first.stop("SIGKILL");
        assert.ok(boxes.every((b) => filtered(b)), "a filter went with the killed agent");
        const down = await statusOf(first.pinPath);
        assert.equal(down.agent.running, false);
        assert.equal(down.attachments.length, 8, "four containers, two sides each");
        assert.deepEqual(down.attachments.flatMap((a) => a.problems), []);
        assert.ok(
          down.attachments.some((a) => a.record.container.id === web.container!.id),
          "status does not name the web container",
        );
        assert.equal(await reach(client.ns, "tcp", web.ip4, 8080), true, "8080 blocked while down");

        // While no agent runs: one container ends (its network goes, as kubelet's CNI DEL
        // does), one stops (its network stays), another starts.
        const endedId = ending.container!.id;
        boxes.splice(boxes.indexOf(ending), 1);
        await ending.remove();
        const stoppedId = stopping.container!.id;
        await stopping.container!.stop();
        const late = await cniBox(cd, net, { namespace: "default", labels: { app: "web" } });
        boxes.push(late);
        const gone = (await statusOf(first.pinPath)).attachments
          .filter((a) => a.record.container.id === endedId);
        assert.equal(gone.length, 2);
        for (const a of gone) {
          assert.ok(a.problems.some((p) => /gone|not pinned/.test(p)), JSON.stringify(a));
        }

        second = AgentProcess.start(args);
        await second.waitFor(/containerd resync: 3 tasks/);
        // The ended container's links lost their interfaces (defunct): collected at once; the
        // stopped one's once containerd's tasks showed nobody runs behind them.
        assert.match(second.log, /found the pins of an earlier run[^\n]*"defunct_collected":2/);
        await second.waitFor(/collected 2 filters of containers that ended/);
        const running = boxes.filter((b) => b !== stopping);
        assert.ok(await eventually(() => running.every((b) => filtered(b)), 10_000), second.log);
        assert.equal(peerXdpName(stopping), "", "the stopped container's own end is filtered");
        const after = programsOf(web);
        for (let i = 0; i < 2; i++) {
          assert.notEqual(after[i], before[i], "a side still runs the killed agent's program");
          assert.equal(programExists(before[i]), false, "the killed agent's program is loaded");
        }
        const adopted = await statusOf(second.pinPath);
        assert.equal(adopted.agent.running, true);
        const adoptedIds = new Set(adopted.attachments.map((a) => a.record.container?.id));
        assert.deepEqual(
          adoptedIds,
          new Set(running.map((b) => b.container!.id)),
          "web, client and the late one",
        );
        assert.equal(adopted.attachments.length, 6, "two sides each");
        assert.ok(!adoptedIds.has(endedId) && !adoptedIds.has(stoppedId));
        assert.deepEqual(
          [...adopted.problems, ...adopted.attachments.flatMap((a) => a.problems)],
          [],
        );
        assert.equal(await reach(client.ns, "tcp", web.ip4, 8080), true);
        assert.equal(
          await reach(client.ns, "tcp", late.ip4, 9000),
          false,
          "the late one: default deny",
        );

        await new Promise((r) => setTimeout(r, 300));
        const { sent, received } = await flood.stop();
        flood = undefined;
        assert.ok(sent > 500n, `only ${sent} datagrams were sent`);
        assert.equal(received, 0n, `${received} of ${sent} denied datagrams got through`);
        assert.equal(await second.stop("SIGTERM"), 0, second.log);
        const counted = countedAtExit(second.log, "web", "discard");
        console.log(
          `${sent} datagrams to a denied port across SIGKILL, downtime and adoption: ` +
            `${received} got through, ${counted} counted`,
        );
        assert.equal(counted, sent);
        // The drop records name the container.
        const drop = second.log.split("\n").filter((l) => l.startsWith("{")).map((l) =>
          JSON.parse(l)
        )
          .find((r) => r.message?.startsWith("dropped") && r.rule === "discard");
        assert.ok(drop, "no drop record");
        assert.equal(drop.container_id, web.container!.id);
        assert.equal(drop.container_name, "web-server");
        assert.equal(drop.namespace, "k8s.io");
        assert.equal(drop.policy, "web");
        assert.throws(() => Deno.statSync(second!.pinPath), Deno.errors.NotFound);
      } finally {
        await flood?.kill();
        await first.stop("SIGKILL");
        await (second ?? first).dispose();
        await removeAll(boxes);
        await deleteCniNetwork(net);
      }
    });
  });
});

Deno.test("cmode: --keep-on-exit leaves every container filtered; detach then removes both ends, the pins and the state", async () => {
  await withContainerd(async (cd) => {
    await withPolicyFile(POLICY, async (file) => {
      const net = await createCniNetwork();
      const boxes: Box[] = [];
      const agent = AgentProcess.start([
        "--cmode",
        "--containerd-socket",
        cd.socket,
        "--policy",
        file,
        "--keep-on-exit",
      ]);
      try {
        const web = await cniBox(cd, net, { namespace: "default", labels: { app: "web" } });
        boxes.push(web);
        assert.ok(await eventually(() => filtered(web), 10_000), agent.log);
        await agent.waitFor(/filtering container/);
        const [host, peer] = programsOf(web);
        assert.equal(await agent.stop("SIGTERM"), 0, agent.log);
        assert.match(agent.log, /leaving every filter enforcing \(--keep-on-exit\)/);
        assert.ok(filtered(web), "--keep-on-exit detached the container");
        assert.deepEqual(programsOf(web), [host, peer]);

        const r = await tinyfw(["detach", "--pin-path", agent.pinPath]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /detached 2 XDP filters \(2 held by a pinned link/);
        assert.ok(unfiltered(web), "a container's end is still filtered after detach");
        assert.equal(programExists(host) || programExists(peer), false, "a program is left");
        assert.throws(() => Deno.statSync(agent.pinPath), Deno.errors.NotFound);
        assert.throws(() => Deno.statSync(new StateFiles(agent.pinPath).dir), Deno.errors.NotFound);
      } finally {
        await agent.dispose();
        await removeAll(boxes);
        await deleteCniNetwork(net);
      }
    });
  });
});
