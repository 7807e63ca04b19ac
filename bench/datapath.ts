/**
 * Data-path benchmark (SPEC §6): nanoseconds per packet in the kernel, through
 * BPF_PROG_TEST_RUN, for
 *   - an empty XDP program (the baseline every other number is reduced by),
 *   - xdp-filter (Debian's xdp-tools) with one port rule (drop TCP to port 80),
 *     loaded on a veth pair in a network namespace of the bench's own,
 *   - tinyfw with the built-in default policy, and with 1, 1,000 and 100,000
 *     CIDR+port rules,
 *   - and, beside the targets, the paths the flow table added: an allowed
 *     packet (default policy), the same on a learning attachment, and with
 *     `defaultAction: deny` a TCP ACK that answers no flow (dropped after a flow
 *     lookup) and one that answers a flow the tc learner learned (passed).
 * Each measurement is the median of ROUNDS runs of REPEAT packets; ratios are
 * medians of ratios within (empty, xdp-filter, tinyfw) triples run back to back; the programs
 * take turns within each round so slow phases of the machine hit all of them.
 *
 *   deno task bench                 # prints a table, writes bench/out/datapath.json
 *   BENCH_REPEAT=100000 deno task bench
 */
import { webOnlyPolicy } from "../tests/helpers/gen.ts";
import { BpfObject } from "../lib/ffi/mod.ts";
import { Datapath, openProgram, PolicySlots, testRun, xdpQuery } from "../lib/datapath/mod.ts";
import { DIR_INGRESS } from "../lib/abi/mod.ts";
import { compilePolicy, defaultPolicy, type Policy, type Rule } from "../lib/policy/mod.ts";
import { makeCidr } from "../lib/net/mod.ts";
import { buildFrame } from "../lib/model/mod.ts";
import { createVethPair, Netns } from "../tests/helpers/netns.ts";

const REPEAT = Number(Deno.env.get("BENCH_REPEAT") ?? 1_000_000);
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 7);
const ROOT = new URL("../", import.meta.url).pathname;

/** n rules "deny TCP to port P from CIDR", distinct /28s of 10.0.0.0/8 (and 100.64/10 beyond). */
function cidrPortPolicy(n: number): Policy {
  const rules: Rule[] = [];
  for (let i = 0; i < n; i++) {
    const v = i * 16; // a /28 each
    const addr = new Uint8Array([10 + (v >>> 24), (v >>> 16) & 255, (v >>> 8) & 255, v & 255]);
    rules.push({
      name: `r${i}`,
      action: "deny",
      direction: "ingress",
      protocol: "tcp",
      ports: [{ from: 1000 + (i % 50_000), to: 1000 + (i % 50_000) }],
      cidrs: [makeCidr(4, addr, 28)],
    });
  }
  return { name: `cidr-port-${n}`, defaultAction: "allow", rules };
}

/** The source address and port that rule `i` of cidrPortPolicy matches. */
function matchOf(i: number): { src: string; dport: number } {
  const v = i * 16 + 5;
  return {
    src: `${10 + (v >>> 24)}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`,
    dport: 1000 + (i % 50_000),
  };
}

interface Subject {
  name: string;
  packet: string;
  fd: number;
  frame: Uint8Array;
  expect: number;
  runs: number[];
  /** Per measurement: (tinyfw - empty) / (xdp-filter - empty), from one close triple. */
  ratios: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function loadXdpFilter(ns: Netns, iface: string): Promise<number> {
  await ns.exec(["xdp-filter", "load", iface, "--mode", "skb", "--features", "tcp,ipv4,ipv6"]);
  await ns.exec(["xdp-filter", "port", "80", "--mode", "dst", "--proto", "tcp"]);
  const progId = ns.enter(() => xdpQuery(ns.ifindex(iface)).progId);
  if (!progId) throw new Error("xdp-filter did not attach");
  return progId;
}

async function main(): Promise<void> {
  const tcp80 = buildFrame({
    family: 4,
    proto: "tcp",
    src: "192.0.2.1",
    dst: "198.51.100.1",
    dport: 80,
  });
  const subjects: Subject[] = [];
  const add = (name: string, packet: string, fd: number, frame: Uint8Array, expect: number) =>
    subjects.push({ name, packet, fd, frame, expect, runs: [], ratios: [] });

  // Baseline.
  const empty = BpfObject.openMem(Deno.readFileSync(`${ROOT}bpf/bench_empty.bpf.o`), {
    name: "empty",
  });
  empty.load();
  add("empty XDP program", "tcp :80", empty.findProgram("tinyfw_bench_empty")!.fd, tcp80, 2);

  // xdp-filter, on a veth of our own.
  const ns = await Netns.create("tfwb");
  const cleanups: (() => void | Promise<void>)[] = [() => ns.delete()];
  try {
    const veth = await createVethPair({ prefix: "tfwb", hostNetns: ns });
    const xfId = await loadXdpFilter(ns, veth.host);
    // xdp-filter pins its maps in the host's bpffs (/sys/fs/bpf/xdp-filter): unloading removes them.
    cleanups.push(async () => {
      await ns.exec(["xdp-filter", "unload", veth.host], { allowFailure: true });
    });
    const xf = openProgram(xfId);
    cleanups.push(() => xf.close());
    add("xdp-filter, 1 port rule", "tcp :80", xf.fd, tcp80, 1);

    // tinyfw: one instance per policy, each in its own attach slot.
    const dp = Datapath.load();
    cleanups.push(() => dp.close());
    const slots = new PolicySlots(dp);
    const variants: [string, Policy, Uint8Array][] = [
      ["tinyfw, default policy", defaultPolicy(), tcp80],
    ];
    for (const n of [1, 1000, 100_000]) {
      const m = matchOf(Math.floor(n / 2));
      const frame = buildFrame({
        family: 4,
        proto: "tcp",
        src: m.src,
        dst: "198.51.100.1",
        dport: m.dport,
      });
      variants.push([
        `tinyfw, ${n.toLocaleString("en")} CIDR+port rules`,
        cidrPortPolicy(n),
        frame,
      ]);
    }
    variants.forEach(([name, policy, frame], i) => {
      const t0 = performance.now();
      const installed = slots.install(compilePolicy(policy));
      const ms = performance.now() - t0;
      slots.configureAttachment(i + 1, installed.slot, DIR_INGRESS);
      const prog = dp.instance(i + 1);
      cleanups.push(() => prog.close());
      console.error(`${name}: compiled and installed in ${ms.toFixed(0)} ms`);
      add(
        name,
        name.includes("default") ? "tcp :80" : "tcp CIDR:port (matches)",
        prog.fd,
        frame,
        1,
      );
    });

    // The paths around the flow table (docs/DATAPATH.md §7), measured beside the targets.
    const tcp443 = buildFrame({
      family: 4,
      proto: "tcp",
      src: "192.0.2.1",
      dst: "198.51.100.1",
      dport: 443,
    });
    const defaultSlot = slots.install(compilePolicy(defaultPolicy())).slot;
    slots.configureAttachment(10, defaultSlot, DIR_INGRESS);
    slots.configureAttachment(11, defaultSlot, DIR_INGRESS, { learn: true });
    const webOnly = webOnlyPolicy();
    slots.configureAttachment(12, slots.install(compilePolicy(webOnly)).slot, DIR_INGRESS);
    const [plain, learning, deny] = [10, 11, 12].map((id) => dp.instance(id));
    const learner = dp.tcLearner();
    cleanups.push(() => [plain, learning, deny, learner].forEach((p) => p.close()));
    const ack = (sport: number) =>
      buildFrame({
        family: 4,
        proto: "tcp",
        src: "198.51.100.1",
        dst: "192.0.2.1",
        sport,
        dport: 40000,
        tcpFlags: 0x10,
      });
    // The host connects to 198.51.100.1:443; the tc learner sees its SYN.
    testRun(
      learner.fd,
      buildFrame({
        family: 4,
        proto: "tcp",
        src: "192.0.2.1",
        dst: "198.51.100.1",
        sport: 40000,
        dport: 443,
      }),
    );
    add("tinyfw, default policy", "tcp :443 (allowed)", plain.fd, tcp443, 2);
    add("tinyfw, default policy, learning", "tcp :443 (allowed, learned)", learning.fd, tcp443, 2);
    add("tinyfw, deny + allow :8080", "tcp ACK, no flow (dropped)", deny.fd, ack(444), 1);
    add("tinyfw, deny + allow :8080", "tcp ACK, reply (flow hit)", deny.fd, ack(443), 2);

    for (const s of subjects) {
      const r = testRun(s.fd, s.frame, 1).retval;
      if (r !== s.expect) throw new Error(`${s.name}: returned ${r}, expected ${s.expect}`);
    }
    // Each tinyfw measurement is taken right after the empty program's and
    // xdp-filter's, and its ratio computed from that triple: a slow phase of
    // the (virtual) machine then moves all three together instead of skewing one.
    const [emptyRow, xfRow] = subjects;
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of subjects.slice(2)) {
        const e = testRun(emptyRow.fd, emptyRow.frame, REPEAT).durationNs;
        const x = testRun(xfRow.fd, xfRow.frame, REPEAT).durationNs;
        const t = testRun(s.fd, s.frame, REPEAT).durationNs;
        emptyRow.runs.push(e);
        xfRow.runs.push(x);
        s.runs.push(t);
        s.ratios.push((t - e) / (x - e));
      }
    }
  } finally {
    for (const c of cleanups.reverse()) await c();
    empty.close();
  }

  const base = median(subjects[0].runs);
  const xdpFilter = median(subjects[1].runs) - base;
  const rows = subjects.map((s) => {
    const raw = median(s.runs);
    const net = raw - base;
    return {
      program: s.name,
      packet: s.packet,
      raw_ns: raw,
      net_ns: net,
      vs_xdp_filter: s.ratios.length ? median(s.ratios) : net / xdpFilter,
    };
  });
  const defaultRow = rows.find((r) => r.program === "tinyfw, default policy")!;
  const rules100k = rows.find((r) => r.program.includes("100,000"))!;
  const result = {
    date: new Date().toISOString(),
    kernel: Deno.osRelease(),
    cpus: navigator.hardwareConcurrency,
    repeat: REPEAT,
    rounds: ROUNDS,
    rows,
    targets: {
      default_over_xdp_filter: defaultRow.vs_xdp_filter,
      default_target: 0.25,
      rules_100k_over_xdp_filter: rules100k.vs_xdp_filter,
      rules_100k_target: 1,
    },
  };
  Deno.mkdirSync(`${ROOT}bench/out`, { recursive: true });
  Deno.writeTextFileSync(`${ROOT}bench/out/datapath.json`, JSON.stringify(result, null, 2) + "\n");

  console.log(
    `BPF_PROG_TEST_RUN, repeat ${REPEAT}, median of ${ROUNDS} rounds, kernel ${result.kernel}`,
  );
  console.log("| program | packet | ns/packet | minus empty | vs xdp-filter |");
  console.log("|---|---|---:|---:|---:|");
  for (const r of rows) {
    console.log(
      `| ${r.program} | ${r.packet} | ${r.raw_ns.toFixed(1)} | ${r.net_ns.toFixed(1)} | ` +
        `${r === rows[0] ? "-" : r.vs_xdp_filter.toFixed(2)} |`,
    );
  }
  const t = result.targets;
  console.log(
    `default policy / xdp-filter = ${t.default_over_xdp_filter.toFixed(2)} (target <= 0.25): ` +
      (t.default_over_xdp_filter <= 0.25 ? "met" : "NOT met"),
  );
  console.log(
    `100,000 rules / xdp-filter = ${t.rules_100k_over_xdp_filter.toFixed(2)} (target < 1): ` +
      (t.rules_100k_over_xdp_filter < 1 ? "met" : "NOT met"),
  );
}

if (import.meta.main) await main();
