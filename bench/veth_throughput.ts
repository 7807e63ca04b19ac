/**
 * Allowed TCP throughput through a container's veth pair (SPEC §6: at least
 * 90% of the unfiltered one), with tinyfw's programs on both ends as
 * containers mode attaches them (host end: egress, container end: ingress,
 * both learning; the built-in default policy), in native and in generic XDP
 * mode, against no program at all. iperf3 from a "host" namespace to a
 * "container" namespace, both the bench's own; ROUNDS runs of SECONDS each per
 * setting, taking turns; medians.
 *
 *   deno task bench:veth          # prints a table, writes bench/out/veth_throughput.json
 */
import { AttachIds, Datapath, PolicySlots, type XdpMode } from "../lib/datapath/mod.ts";
import { DIR_EGRESS, DIR_INGRESS } from "../lib/abi/mod.ts";
import { compilePolicy, defaultPolicy } from "../lib/policy/mod.ts";
import { attachSide, detachSide, InstancePool, NetnsHandle } from "../lib/containers/mod.ts";
import { createVethPair, Netns } from "../tests/helpers/netns.ts";

const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 4);
const OUT = new URL("./out/veth_throughput.json", import.meta.url).pathname;

type Setting = "unfiltered" | XdpMode;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const host = await Netns.create("tfwp");
  const ctr = await Netns.create("tfwp");
  const dp = Datapath.load();
  const handles: NetnsHandle[] = [];
  try {
    const veth = await createVethPair({
      prefix: "tfwp",
      hostNetns: host,
      peerNetns: ctr,
      hostAddrs: ["10.90.0.1/30"],
      peerAddrs: ["10.90.0.2/30"],
    });
    const slots = new PolicySlots(dp);
    const inst = slots.install(compilePolicy(defaultPolicy()));
    const pool = new InstancePool(dp, slots, {
      ids: new AttachIds(dp.maps.attach.maxEntries),
      spare: 0,
    });
    const hostNs = NetnsHandle.ofPath(host.path);
    const ctrNs = NetnsHandle.ofPath(ctr.path);
    handles.push(hostNs, ctrNs);

    /** One iperf3 run from host to container, in Gbit/s. */
    const measure = async (): Promise<number> => {
      const server = await ctr.spawn(["iperf3", "-s", "-1"]);
      try {
        await new Promise((r) => setTimeout(r, 300));
        const out = await host.exec(["iperf3", "-c", "10.90.0.2", "-t", String(SECONDS), "-J"]);
        return JSON.parse(out.stdout).end.sum_received.bits_per_second / 1e9;
      } finally {
        await server.kill();
      }
    };
    /** Attaches both ends in `mode`, runs, detaches. */
    const filtered = async (mode: XdpMode): Promise<number> => {
      const eg = pool.take();
      const ig = pool.take();
      slots.configureAttachment(eg.attachId, inst.slot, DIR_EGRESS, { learn: true });
      slots.configureAttachment(ig.attachId, inst.slot, DIR_INGRESS, { learn: true });
      const sides = [
        attachSide(eg, veth.hostIndex, mode, { nsFd: hostNs.fd }),
        attachSide(ig, veth.peerIndex, mode, { nsFd: ctrNs.fd }),
      ];
      try {
        return await measure();
      } finally {
        for (const s of sides) detachSide(s);
        pool.give(eg);
        pool.give(ig);
      }
    };

    const runs: Record<Setting, number[]> = { unfiltered: [], native: [], generic: [] };
    for (let r = 0; r < ROUNDS; r++) {
      runs.unfiltered.push(await measure());
      runs.native.push(await filtered("native"));
      runs.generic.push(await filtered("generic"));
    }
    const base = median(runs.unfiltered);
    const result = Object.fromEntries(
      (Object.keys(runs) as Setting[]).map((k) => [k, {
        gbps: Number(median(runs[k]).toFixed(2)),
        runs: runs[k].map((x) => Number(x.toFixed(2))),
        ofUnfiltered: Number((median(runs[k]) / base).toFixed(2)),
      }]),
    );
    console.log(`iperf3 TCP, host -> container through one veth pair, ${ROUNDS} x ${SECONDS} s`);
    console.log("| setting | Gbit/s (median) | of unfiltered | runs |");
    console.log("|---|---:|---:|---|");
    for (const [k, v] of Object.entries(result)) {
      console.log(`| ${k} | ${v.gbps} | ${v.ofUnfiltered} | ${v.runs.join(", ")} |`);
    }
    await Deno.mkdir(new URL("./out/", import.meta.url), { recursive: true });
    await Deno.writeTextFile(
      OUT,
      JSON.stringify(
        { date: new Date().toISOString(), rounds: ROUNDS, seconds: SECONDS, result },
        null,
        2,
      ) +
        "\n",
    );
    slots.remove(inst);
  } finally {
    for (const h of handles) h.close();
    dp.close();
    await host.delete();
    await ctr.delete();
  }
}

await main();
