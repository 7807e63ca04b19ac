/**
 * Reload time between policy files at the capacity contract's maxima
 * (tests/helpers/max_policies.ts): the agent runs on a veth of a network
 * namespace of the bench's own, under a UDP flood that every file drops, and
 * each SIGHUP's "policy reloaded in N ms" (file read, parsed, validated,
 * compiled, written beside the policy in force, switched) is collected.
 * `tests/e2e/reload_test.ts` checks, with the same files, that no datagram
 * of the flood gets through.
 *
 *   deno task bench:reload            # ROUNDS=3 rounds of 4 switches; bench/out/reload.json
 */
import { AgentProcess } from "../tests/helpers/agent_process.ts";
import { addressMax, portMax } from "../tests/helpers/max_policies.ts";
import {
  type Flood,
  SERVER4,
  startFlood,
  startServer,
  withTopology,
} from "../tests/helpers/topology.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const ROUNDS = Number(Deno.env.get("ROUNDS") ?? 3);

interface Switch {
  from: string;
  to: string;
  ms: number;
}

async function main(): Promise<void> {
  const files: [string, string][] = [
    ["address-max #0", addressMax(0)],
    ["port-max #0", portMax(0)],
    ["address-max #1", addressMax(1)],
    ["port-max #1", portMax(1)],
  ];
  const switches: Switch[] = [];
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-bench-reload-" });
  const file = `${dir}/policy.yaml`;
  try {
    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { udp: [9] });
      await Deno.writeTextFile(file, files[0][1]);
      const agent = AgentProcess.start(["--iface", iface, "--policy", file], server);
      let flood: Flood | undefined;
      try {
        await agent.waitFor(/attached to/, 120_000);
        flood = await startFlood(client, SERVER4, 9);
        let done = 0;
        for (let round = 0; round < ROUNDS; round++) {
          for (let k = 1; k <= files.length; k++) {
            const [from, to] = [files[(k - 1) % files.length], files[k % files.length]];
            await Deno.writeTextFile(`${file}.tmp`, to[1]);
            await Deno.rename(`${file}.tmp`, file);
            agent.signal("SIGHUP");
            await agent.waitForCount(/policy reloaded \(SIGHUP\)/g, ++done, 180_000);
            const all = [...agent.log.matchAll(/policy reloaded \(SIGHUP\) in (\d+) ms/g)];
            const ms = Number(all[all.length - 1][1]);
            switches.push({ from: from[0], to: to[0], ms });
            console.log(
              `${from[0].padEnd(15)} -> ${to[0].padEnd(15)} ${String(ms).padStart(6)} ms`,
            );
          }
        }
        if (/rejected/.test(agent.log)) throw new Error(`a reload was rejected:\n${agent.log}`);
      } finally {
        await flood?.kill();
        await agent.dispose();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const sorted = switches.map((s) => s.ms).sort((a, b) => a - b);
  console.log(
    `median ${sorted[Math.floor(sorted.length / 2)]} ms, worst ${sorted[sorted.length - 1]} ms`,
  );
  await Deno.mkdir(`${ROOT}bench/out`, { recursive: true });
  await Deno.writeTextFile(
    `${ROOT}bench/out/reload.json`,
    JSON.stringify({ when: new Date().toISOString(), switches }, null, 2) + "\n",
  );
}

if (import.meta.main) await main();
