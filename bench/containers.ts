/**
 * Containers-mode benchmark (SPEC §6, control plane): a private containerd
 * and runc, containers on a CNI bridge network, the agent as a user runs it
 * (`main.ts --cmode --log-format json`), and:
 *
 *   - event to filter attached, over STARTS container starts (one at a time):
 *     from the `/tasks/create` event's timestamp in containerd to both ends
 *     of the container's veth filtered (the agent logs it: `latency_ms`), and
 *     from the event's arrival in the agent (`handled_ms`); p50/p90/p99/max;
 *   - how long after the agent process is spawned PREEXISTING containers that
 *     were already running are filtered;
 *   - the agent's memory (RSS, and the anonymous part of it: the rest are clean
 *     pages of the deno executable) with PREEXISTING containers filtered, and
 *     idle after the starts (every container gone).
 *
 *   deno task bench:containers            # prints a table, writes bench/out/containers.json
 *   BENCH_STARTS=20 deno task bench:containers
 */
import { cniBox, eventually, filtered } from "../tests/helpers/boxes.ts";
import type { Box } from "../tests/helpers/boxes.ts";
import { createCniNetwork, deleteCniNetwork } from "../tests/helpers/cni.ts";
import { withContainerd } from "../tests/helpers/containerd.ts";
import { AgentProcess } from "../tests/helpers/agent_process.ts";

const STARTS = Number(Deno.env.get("BENCH_STARTS") ?? 100);
const PREEXISTING = Number(Deno.env.get("BENCH_PREEXISTING") ?? 10);
const OUT = new URL("./out/containers.json", import.meta.url).pathname;

const POLICY = `policies:
  - name: web
    selector:
      labels: { app: web }
    defaultAction: deny
    rules:
      - name: http-in
        action: allow
        direction: ingress
        protocol: tcp
        ports: [8080]
  - name: rest
    rules:
      - name: no-telnet
        action: deny
        direction: both
        protocol: tcp
        ports: [23]
`;

interface Attached {
  container_id: string;
  latency_ms: number;
  handled_ms: number;
}

/** The agent's "filtering ..." records (JSON log lines) for task events. */
function attachRecords(log: string): Attached[] {
  const out: Attached[] = [];
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    const r = JSON.parse(line);
    if (typeof r.latency_ms === "number" && r.event === "task-create") out.push(r);
  }
  return out;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function summary(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: quantile(s, 0.5),
    p90: quantile(s, 0.9),
    p99: quantile(s, 0.99),
    max: s[s.length - 1],
  };
}

/** The process's resident memory and its anonymous part, in MiB (/proc/PID/smaps_rollup). */
function memoryMiB(pid: number): { rss: number; anonymous: number } {
  const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)![1]);
  return { rss: Math.round(kb("Rss") / 1024), anonymous: Math.round(kb("Anonymous") / 1024) };
}

async function main(): Promise<void> {
  await withContainerd(async (cd) => {
    const dir = await Deno.makeTempDir({ prefix: "tinyfw-bench-" });
    const net = await createCniNetwork();
    const boxes: Box[] = [];
    let agent: AgentProcess | undefined;
    try {
      await Deno.writeTextFile(`${dir}/policy.yaml`, POLICY);
      const args = [
        "--cmode",
        "--containerd-socket",
        cd.socket,
        "--policy",
        `${dir}/policy.yaml`,
        "--log-format",
        "json",
      ];
      // Containers that run before the agent.
      for (let i = 0; i < PREEXISTING; i++) {
        boxes.push(await cniBox(cd, net, { namespace: "default", labels: { app: "web" } }));
      }
      const spawned = performance.now();
      agent = AgentProcess.start(args);
      await eventually(() => boxes.every((b) => filtered(b)), 20_000);
      const preexistingMs = Math.round(performance.now() - spawned);
      await agent.waitFor(/containerd resync/);
      await new Promise((r) => setTimeout(r, 1000));
      const withContainers = memoryMiB(agent.child.pid);
      for (const b of boxes.splice(0)) await b.remove();

      for (let i = 0; i < STARTS; i++) {
        const box = await cniBox(cd, net, {
          namespace: i % 2 ? "default" : "k8s.io",
          labels: i % 3 ? { app: "web" } : {},
        });
        boxes.push(box);
        const id = box.container!.id;
        await agent.waitFor(new RegExp(`"container_id":"${id}"[^\\n]*"event":"task-create"`));
        await box.remove();
        boxes.pop();
      }
      await new Promise((r) => setTimeout(r, 1000));
      const idleAfter = memoryMiB(agent.child.pid);
      const records = attachRecords(agent.log);
      const result = {
        date: new Date().toISOString(),
        kernel: Deno.osRelease(),
        starts: STARTS,
        eventToAttachedMs: summary(records.map((r) => r.latency_ms)),
        receivedToAttachedMs: summary(records.map((r) => r.handled_ms)),
        preexisting: { containers: PREEXISTING, filteredAfterSpawnMs: preexistingMs },
        memoryMiB: { withPreexisting: withContainers, idleAfterStarts: idleAfter },
      };
      await Deno.mkdir(new URL("./out/", import.meta.url), { recursive: true });
      await Deno.writeTextFile(OUT, JSON.stringify(result, null, 2) + "\n");
      const row = (name: string, s: ReturnType<typeof summary>) =>
        `${
          name.padEnd(38)
        } ${s.n} starts  p50 ${s.p50} ms  p90 ${s.p90} ms  p99 ${s.p99} ms  max ${s.max} ms`;
      console.log(row("containerd event -> both ends filtered", result.eventToAttachedMs));
      console.log(row("event received -> both ends filtered", result.receivedToAttachedMs));
      console.log(
        `${PREEXISTING} running containers filtered ${preexistingMs} ms after the agent was spawned`,
      );
      const mem = (m: { rss: number; anonymous: number }) =>
        `RSS ${m.rss} MiB (anonymous ${m.anonymous} MiB)`;
      console.log(`agent with ${PREEXISTING} containers filtered: ${mem(withContainers)}`);
      console.log(`agent idle after ${STARTS} starts: ${mem(idleAfter)}`);
      console.log(`written to ${OUT}`);
    } finally {
      if (agent) await agent.stop();
      for (const b of boxes) await b.remove().catch(() => {});
      await deleteCniNetwork(net);
      await Deno.remove(dir, { recursive: true });
    }
  });
}

await main();
