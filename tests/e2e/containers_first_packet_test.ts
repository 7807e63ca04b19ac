/**
 * The first packet (SPEC §4, issue 4): 100 containers whose entrypoint
 * connects, as its very first action, to a port their policy denies, then to
 * one it allows. None may get through on the denied port; every one must get
 * through on the allowed one (so the network was up, and the denied connection
 * was really stopped by tinyfw).
 */
import assert from "node:assert/strict";
import { AgentProcess } from "../helpers/agent_process.ts";
import { createCniNetwork, deleteCniNetwork } from "../helpers/cni.ts";
import { withContainerd } from "../helpers/containerd.ts";
import { type Box, cniBox, eventually } from "../helpers/boxes.ts";

const DENIED = 9999;
const ALLOWED = 9998;
const CONTAINERS = 100;
const PARALLEL = 4;

/**
 * Both the containers' own policy and the fallback deny the port: a veth is
 * filtered with the fallback from the moment it appears until the task's
 * policy replaces it, so the first packet meets one or the other.
 */
const POLICY = `policies:
  - name: guarded
    selector:
      labels: { test: first-packet }
    rules:
      - name: no-${DENIED}
        action: deny
        direction: egress
        protocol: tcp
        ports: [${DENIED}]
  - name: rest
    rules:
      - name: no-${DENIED}-either
        action: deny
        direction: egress
        protocol: tcp
        ports: [${DENIED}]
`;

/** Counts the connections accepted on `port` at `address` (here, on the CNI bridge). */
function counter(address: string, port: number) {
  const listener = Deno.listen({ hostname: address, port });
  const state = { accepted: 0 };
  const loop = (async () => {
    for await (const conn of listener) {
      state.accepted++;
      conn.close();
    }
  })();
  return {
    state,
    async close() {
      listener.close();
      await loop.catch(() => {});
    },
  };
}

Deno.test("cmode: 100 containers connecting to a denied port as their first action: none gets through", async () => {
  await withContainerd(async (cd) => {
    const dir = await Deno.makeTempDir({ prefix: "tinyfw-first-" });
    const net = await createCniNetwork();
    await Deno.writeTextFile(`${dir}/policy.yaml`, POLICY);
    const agent = AgentProcess.start([
      "--cmode",
      "--containerd-socket",
      cd.socket,
      "--policy",
      `${dir}/policy.yaml`,
    ]);
    const boxes = new Set<Box>();
    let denied: ReturnType<typeof counter> | undefined;
    let allowed: ReturnType<typeof counter> | undefined;
    try {
      await agent.waitFor(/containerd resync/);
      // The bridge's address (the containers' gateway) serves both ports.
      const probe = await cniBox(cd, net, { namespace: "default", noContainer: true });
      boxes.add(probe);
      const gateway = probe.hostIp4;
      denied = counter(gateway, DENIED);
      allowed = counter(gateway, ALLOWED);
      const cmd = [
        "sh",
        "-c",
        `nc -w 1 ${gateway} ${DENIED} </dev/null; nc -w 2 ${gateway} ${ALLOWED} </dev/null`,
      ];
      let started = 0;
      const worker = async () => {
        while (started < CONTAINERS) {
          started++;
          const box = await cniBox(cd, net, {
            namespace: started % 2 ? "default" : "k8s.io",
            labels: { test: "first-packet" },
            cmd,
          });
          boxes.add(box);
          await waitExited(box);
          await box.remove();
          boxes.delete(box);
        }
      };
      await Promise.all(Array.from({ length: PARALLEL }, worker));
      await eventually(() => allowed!.state.accepted >= CONTAINERS, 5000);
      console.log(
        `${CONTAINERS} containers: ${denied.state.accepted} got through on the denied port ` +
          `${DENIED}, ${allowed.state.accepted} on the allowed port ${ALLOWED}`,
      );
      console.log(`event to filtered under this load: ${latencySummary(agent.log)}`);
      assert.equal(denied.state.accepted, 0, "connections through on the denied port");
      assert.equal(allowed.state.accepted, CONTAINERS, "connections on the allowed port");
    } finally {
      await denied?.close();
      await allowed?.close();
      const code = await agent.stop();
      for (const b of boxes) await b.remove().catch(() => {});
      await deleteCniNetwork(net);
      await Deno.remove(dir, { recursive: true });
      assert.equal(code, 0, agent.log);
    }
  });
});

/** p50/p99 of the agent's `latency_ms` (containerd's event timestamp to both ends filtered). */
function latencySummary(log: string): string {
  const ms = [...log.matchAll(/event=task-create latency_ms=([\d.]+)/g)].map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.ceil(q * ms.length) - 1)];
  return `${ms.length} starts, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms`;
}

/** Waits until the box's container has exited (its entrypoint is done). */
async function waitExited(box: Box): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await box.container!.status()) === "STOPPED") return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`container in ${box.ns.name} did not exit`);
}
