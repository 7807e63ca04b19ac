/**
 * Containers mode under churn (SPEC §4): hundreds of containers coming and
 * going must each be filtered and released with nothing left growing in the
 * agent (descriptors, memory, program instances, attach entries, pins); and
 * containerd killed and restarted while containers come and go must end,
 * after the agent's reconnect and resync, with every running container
 * filtered and every stopped one released, the filters enforcing throughout.
 *
 * The agent runs as a user runs it (`main.ts --cmode`) against a private
 * containerd, but in a network namespace of the test's own that plays the
 * host: the host ends of the containers' veths are there. Another
 * containers-mode agent on this machine (another test run) filters every
 * veth of the real host's namespace, ours included, and would replace our
 * agent's programs with its own (and ours theirs); in a namespace of our own
 * each agent sees only its veths. Containers are plain veth boxes.
 */
import assert from "node:assert/strict";
import { mapGetFdById } from "../../lib/ffi/libbpf/mod.ts";
import { BpfMap, PROGRAM_NAME, u32Key } from "../../lib/datapath/object.ts";
import { AttachValue, decode } from "../../lib/abi/layout.ts";
import { AgentProcess } from "../helpers/agent_process.ts";
import {
  type Box,
  type BoxSpec,
  eventually,
  filtered,
  removeAll,
  startIn,
  unfiltered,
  vethBox,
  withPolicyFile,
} from "../helpers/boxes.ts";
import { type PrivateContainerd, withContainerd } from "../helpers/containerd.ts";
import { Netns, run } from "../helpers/netns.ts";
import { reach, startServer } from "../helpers/topology.ts";

const PIN_DIR = "/sys/fs/bpf/tinyfw";

const POLICY = `policies:
  - name: rest
    rules:
      - name: no-telnet
        action: deny
        direction: both
        protocol: tcp
        ports: [23]
`;

/** The test's stand-in for the host's network namespace, where the agent runs. */
class Host {
  readonly ns: Netns;
  #count = 0;

  private constructor(ns: Netns) {
    this.ns = ns;
  }

  static async create(): Promise<Host> {
    return new Host(await Netns.create("tfwh"));
  }

  /** Starts the agent in this namespace. */
  agent(args: string[]): AgentProcess {
    return AgentProcess.start(args, this.ns);
  }

  /** A box whose veth's host end is in this namespace (see vethBox). */
  box(cd: PrivateContainerd, spec: BoxSpec): Promise<Box> {
    return vethBox(cd, spec, this.ns);
  }

  /** Whether tinyfw filters both ends of the box's veth. */
  filtered = (box: Box): boolean => filtered(box, this.ns);

  /** Whether neither end of the box's veth has an XDP program. */
  unfiltered = (box: Box): boolean => unfiltered(box, this.ns);

  /** Whether a TCP connection from here into the box succeeds. */
  reach(box: Box, port: number): Promise<boolean> {
    return reach(this.ns, "tcp", box.ip4, port);
  }

  delete(): Promise<void> {
    return this.ns.delete();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The last `n` lines of the agent's log (for failure messages). */
function tail(agent: AgentProcess, n = 60): string {
  return agent.log.trimEnd().split("\n").slice(-n).join("\n");
}

// --- what the agent holds, seen from outside --------------------------------

/** Ids of the BPF maps and programs the process `pid` holds descriptors of (from fdinfo). */
function bpfIdsOf(pid: number): { maps: Set<number>; progs: Set<number> } {
  const maps = new Set<number>();
  const progs = new Set<number>();
  for (const e of Deno.readDirSync(`/proc/${pid}/fdinfo`)) {
    let info: string;
    try {
      info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${e.name}`);
    } catch {
      continue; // closed meanwhile
    }
    const map = /^map_id:\s*(\d+)/m.exec(info);
    if (map) maps.add(Number(map[1]));
    const prog = /^prog_id:\s*(\d+)/m.exec(info);
    if (prog) progs.add(Number(prog[1]));
  }
  return { maps, progs };
}

/** The id of the agent's `attach` map (found among the maps it holds open). */
function attachMapIdOf(pid: number): number {
  for (const id of bpfIdsOf(pid).maps) {
    let m: BpfMap;
    try {
      m = new BpfMap(mapGetFdById(id), true);
    } catch {
      continue;
    }
    try {
      if (m.name === "attach") return id;
    } finally {
      m.close();
    }
  }
  throw new Error(`process ${pid} holds no map named attach`);
}

/** Entries of the attach map `mapId` that point at a policy slot (slot != SLOT_NONE). */
function attachEntries(mapId: number): number {
  const m = new BpfMap(mapGetFdById(mapId), true);
  try {
    let n = 0;
    for (let i = 0; i < m.maxEntries; i++) {
      const v = m.lookup(u32Key(i));
      if (!v) continue;
      const slot = decode(AttachValue, v).slot as number[];
      if (slot[0] !== 0 || slot[1] !== 0) n++;
    }
    return n;
  } finally {
    m.close();
  }
}

/** tinyfw_xdp programs loaded in the kernel: all of them, and those using map `mapId`. */
async function tinyfwPrograms(mapId: number): Promise<{ all: number; ours: number }> {
  const r = await run(["bpftool", "prog", "show", "-j"]);
  const progs = JSON.parse(r.stdout) as { name?: string; map_ids?: number[] }[];
  const tfw = progs.filter((p) => p.name === PROGRAM_NAME);
  return { all: tfw.length, ours: tfw.filter((p) => p.map_ids?.includes(mapId)).length };
}

/** Files under `dir`, recursively (0 when it does not exist). */
function filesUnder(dir: string): number {
  let n = 0;
  try {
    for (const e of Deno.readDirSync(dir)) {
      n += e.isDirectory ? filesUnder(`${dir}/${e.name}`) : 1;
    }
  } catch {
    // absent
  }
  return n;
}

interface Usage {
  fds: number;
  rssKb: number;
  /** Programs the agent holds descriptors of. */
  progFds: number;
  /** tinyfw_xdp programs using the agent's maps. */
  programs: number;
  /** tinyfw_xdp programs in the kernel, anyone's. */
  allPrograms: number;
  attach: number;
  pins: number;
}

async function usageOf(pid: number, attachMap: number): Promise<Usage> {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const rss = /^VmRSS:\s*(\d+) kB/m.exec(status);
  const progs = await tinyfwPrograms(attachMap);
  return {
    fds: [...Deno.readDirSync(`/proc/${pid}/fd`)].length,
    rssKb: rss ? Number(rss[1]) : NaN,
    progFds: bpfIdsOf(pid).progs.size,
    programs: progs.ours,
    allPrograms: progs.all,
    attach: attachEntries(attachMap),
    pins: filesUnder(PIN_DIR),
  };
}

/** Usage once the agent is idle: the same descriptors, programs and entries 3 times in a row. */
async function idleUsage(pid: number, attachMap: number): Promise<Usage> {
  const key = (u: Usage) => `${u.fds}/${u.progFds}/${u.programs}/${u.attach}`;
  let last = await usageOf(pid, attachMap);
  let same = 0;
  const deadline = performance.now() + 15_000;
  while (same < 3 && performance.now() < deadline) {
    await sleep(250);
    const u = await usageOf(pid, attachMap);
    same = key(u) === key(last) ? same + 1 : 0;
    last = u;
  }
  return last;
}

// --- test 1 ------------------------------------------------------------------

const CYCLES = Number(Deno.env.get("TINYFW_CHURN_CYCLES") ?? 200);
const WARMUP = 10;
const LANES = 2;

Deno.test("cmode: 200 container start/stop cycles: every container filtered, nothing grows", async () => {
  await withContainerd(async (cd) => {
    const boxes: Box[] = [];
    const host = await Host.create();
    const agent = host.agent(["--cmode", "--containerd-socket", cd.socket]);
    let failed: unknown;
    let done = 0;
    try {
      await agent.waitFor(/containerd resync/);
      const pid = agent.child.pid;
      const attachMap = attachMapIdOf(pid);
      // One box per lane kept across its cycles (the workload is released
      // when its task ends and made again for the next one).
      const kept: Box[] = [];
      for (let l = 0; l < LANES; l++) {
        const b = await host.box(cd, { namespace: "default", noContainer: true });
        boxes.push(b);
        kept.push(b);
      }

      /** One start/stop cycle; `i` is the lane's own cycle number. */
      const cycle = async (lane: number, i: number) => {
        const namespace = i % 2 === 0 ? "default" : "k8s.io";
        const fresh = Math.floor(i / 2) % 2 === 1;
        let box = kept[lane];
        if (fresh) {
          box = await host.box(cd, { namespace, noContainer: true });
          boxes.push(box);
        }
        const what = `cycle ${done + 1} (lane ${lane}, ${namespace}, ${fresh ? "fresh" : "kept"} ` +
          `namespace ${box.ns.name}, veth ${box.hostVeth})`;
        await startIn(cd, box, { namespace });
        const id = box.container!.id;
        assert.ok(
          await eventually(() => host.filtered(box), 10_000),
          `${what}: container ${namespace}/${id} not filtered:\n${tail(agent)}`,
        );
        await box.container!.stop();
        assert.ok(
          await eventually(() => host.unfiltered(box), 10_000),
          `${what}: container ${namespace}/${id} not released:\n${tail(agent)}`,
        );
        if (fresh) {
          boxes.splice(boxes.indexOf(box), 1);
          await box.remove();
        }
        done++;
      };

      /** Cycles `from`..`to`-1 of every lane, lanes in parallel; stops every lane at a failure. */
      const cycles = async (from: number, to: number) => {
        const lanes = Array.from({ length: LANES }, async (_, lane) => {
          for (let i = from; i < to && failed === undefined; i++) {
            try {
              await cycle(lane, i);
            } catch (e) {
              failed ??= e;
            }
          }
        });
        await Promise.all(lanes);
        if (failed !== undefined) throw failed;
      };

      const started = performance.now();
      await cycles(0, WARMUP / LANES);
      const before = await idleUsage(pid, attachMap);
      await cycles(WARMUP / LANES, CYCLES / LANES);
      await removeAll(boxes);
      const after = await idleUsage(pid, attachMap);
      const secs = ((performance.now() - started) / 1000).toFixed(1);

      console.log(
        `${done} cycles in ${secs} s: fds ${before.fds} -> ${after.fds}, ` +
          `RSS ${(before.rssKb / 1024).toFixed(1)} -> ${(after.rssKb / 1024).toFixed(1)} MB, ` +
          `programs ${before.programs} -> ${after.programs} (agent's prog fds ` +
          `${before.progFds} -> ${after.progFds}; tinyfw_xdp in the kernel ` +
          `${before.allPrograms} -> ${after.allPrograms}), ` +
          `attach entries ${before.attach} -> ${after.attach}, pins ${before.pins} -> ${after.pins}`,
      );
      assert.equal(done, CYCLES);
      assert.equal(agent.count(/filtering container \S+: policy/g), CYCLES, tail(agent));
      assert.equal(agent.count(/released \S+ \(task (exited|deleted)\)/g), CYCLES, tail(agent));
      assert.equal(after.fds, before.fds, "open descriptors back to the warm-up level");
      assert.equal(after.progFds, before.progFds, "program descriptors back to the warm-up level");
      assert.equal(after.programs, before.programs, "programs back to the warm-up level");
      assert.equal(after.attach, before.attach, "attach entries back to the warm-up level");
      assert.equal(after.attach, 0, "no attach entry points at a policy with nothing filtered");
      assert.equal(after.pins, before.pins, "pins unchanged");
      assert.ok(
        after.rssKb - before.rssKb < 20 * 1024,
        `RSS grew by ${((after.rssKb - before.rssKb) / 1024).toFixed(1)} MB`,
      );
      assert.doesNotMatch(agent.log, /could not|containers mode: /, "no errors logged");

      const code = await agent.stop();
      assert.equal(code, 0, tail(agent));
      assert.equal((await tinyfwPrograms(attachMap)).ours, 0, "no program left after exit");
    } finally {
      await agent.stop();
      await removeAll(boxes);
      await host.delete();
    }
  });
});

// --- test 2 ------------------------------------------------------------------

/** The retry delays the agent announced after losing containerd, in order. */
function retries(agent: AgentProcess): number[] {
  return [...agent.log.matchAll(/is unreachable .*retrying in (\d+) ms/g)].map((m) => Number(m[1]));
}

/** Waits until the agent announces a retry delay of at least `ms`. */
async function waitForRetryOf(agent: AgentProcess, ms: number): Promise<void> {
  const deadline = performance.now() + 20_000;
  while (!retries(agent).some((d) => d >= ms)) {
    if (performance.now() > deadline) {
      throw new Error(`the agent never announced a retry in ${ms} ms or more:\n${tail(agent)}`);
    }
    await sleep(10);
  }
}

const CONNECTED = /connected to containerd at /g;
const RESYNC = /containerd resync: /g;

Deno.test("cmode: containerd killed and restarted while containers come and go: after reconnect every running container is filtered, every stopped one released", async () => {
  await withContainerd(async (cd) => {
    await withPolicyFile(POLICY, async (file) => {
      const boxes: Box[] = [];
      const host = await Host.create();
      // At debug level: every failed attempt is logged with its retry delay.
      const agent = host.agent([
        "--cmode",
        "--containerd-socket",
        cd.socket,
        "--policy",
        file,
        "--log-level",
        "debug",
      ]);
      const { filtered, unfiltered } = host;
      let exited = false;
      agent.exitCode().then(() => exited = true);
      const box = async (namespace: string, start = true) => {
        const b = await host.box(cd, { namespace, noContainer: !start });
        boxes.push(b);
        return b;
      };
      const all = (bs: Box[], cond: (b: Box) => boolean) => () => bs.every(cond);
      try {
        await agent.waitFor(/containerd resync: 0 tasks/);
        const attachMap = attachMapIdOf(agent.child.pid);
        const a = await box("default");
        const b = await box("k8s.io");
        const r = await box("default");
        assert.ok(await eventually(all([a, b, r], filtered)), tail(agent));
        await startServer(a.ns, { tcp: [23, 9000] });
        assert.equal(await host.reach(a, 9000), true, "A: 9000 in");
        assert.equal(await host.reach(a, 23), false, "A: telnet in denied");

        // 1. containerd goes away: the filters stay and enforce.
        await cd.kill();
        await agent.waitFor(/containerd at \S+ is unreachable/);
        assert.ok([a, b, r].every(filtered), "A, B, R stay filtered while containerd is down");
        assert.equal(await host.reach(a, 23), false, "A: telnet still denied, containerd down");
        assert.equal(await host.reach(a, 9000), true, "A: 9000 still allowed, containerd down");
        // The retries back off: once the next one is 3.2 s away, there is
        // time to change containers behind the agent's back: B stops, R's
        // container is replaced by R2 in the same namespace, C and D start,
        // and A's task is replaced by a new one of the same container (same
        // id, same namespace, new pid): A must stay filtered, not be released.
        await waitForRetryOf(agent, 3200);
        assert.ok(
          [a, b, r].every(filtered),
          "A, B, R still filtered after ~3 s without containerd",
        );
        const c = await box("default", false);
        const d = await box("k8s.io", false);
        const connects = agent.count(CONNECTED);
        const resyncs = agent.count(RESYNC);
        const t0 = performance.now();
        await cd.restart();
        const [bId, rId] = [b.container!.id, r.container!.id];
        const aPid = await a.container!.pid();
        await Promise.all([
          (async () => {
            await cd.ctr("default", "task", "delete", "--force", a.container!.id);
            await cd.ctr("default", "task", "start", "-d", "--null-io", a.container!.id);
          })(),
          b.container!.stop(),
          r.container!.stop().then(() => startIn(cd, r, { namespace: "default" })),
          startIn(cd, c, { namespace: "default" }),
          startIn(cd, d, { namespace: "k8s.io" }),
        ]);
        const changedMs = Math.round(performance.now() - t0);
        assert.equal(
          agent.count(CONNECTED),
          connects,
          `the agent reconnected before the changes were done (${changedMs} ms): ` +
            `this run did not test missed events:\n${tail(agent)}`,
        );
        await agent.waitForCount(RESYNC, resyncs + 1, 15_000);
        await agent.waitFor(
          /containerd resync: 4 tasks, 4 filtered network namespaces \(3 new, 2 released\)/,
          1000,
        );
        assert.ok(
          await eventually(all([a, r, c, d], filtered)),
          `A, R, C, D filtered:\n${tail(agent)}`,
        );
        assert.ok(await eventually(() => unfiltered(b)), `B released:\n${tail(agent)}`);
        assert.notEqual(await a.container!.pid(), aPid, "A runs a new task");
        assert.doesNotMatch(agent.log, new RegExp(`released default/${a.container!.id}`));
        for (const id of [`k8s\\.io/${bId}`, `default/${rId}`]) {
          assert.match(
            agent.log,
            new RegExp(`released ${id} \\(not running after resync\\)`),
            tail(agent, 80),
          );
        }
        assert.match(
          agent.log,
          new RegExp(`filtering container default/${r.container!.id}: policy rest .*event=resync`),
          tail(agent, 80),
        );
        console.log(
          `containerd restarted; B stopped, R replaced, C and D started in ${changedMs} ms ` +
            `while the agent waited to reconnect (retries: ${retries(agent).join(", ")} ms)`,
        );

        // 2. Again, but the agent retries at once (its backoff was reset by the
        // reconnect): the changes race its reconnect, snapshot and events.
        const e = await box("default", false);
        const connects2 = agent.count(CONNECTED);
        const retried = retries(agent).length;
        await cd.kill();
        await agent.waitForCount(/is unreachable/g, retried + 1);
        assert.ok([a, r, c, d].every(filtered), "A, R, C, D stay filtered");
        await cd.restart();
        const cId = c.container!.id;
        await Promise.all([c.container!.stop(), startIn(cd, e, { namespace: "default" })]);
        await agent.waitForCount(CONNECTED, connects2 + 1, 15_000);
        assert.ok(
          await eventually(all([a, r, d, e], filtered), 10_000),
          `A, R, D, E filtered:\n${tail(agent)}`,
        );
        assert.ok(
          await eventually(all([b, c], unfiltered), 10_000),
          `B, C released:\n${tail(agent)}`,
        );
        // (What the agent did shows before its log line comes through the pipe.)
        await agent.waitFor(new RegExp(`released default/${cId} \\(`), 5000);
        assert.equal(await host.reach(a, 23), false, "A: telnet denied after the reconnects");
        assert.equal(await host.reach(a, 9000), true, "A: 9000 allowed after the reconnects");
        await agent.waitForCount(/filtering container /g, 7, 5000);
        await agent.waitForCount(/released /g, 3, 5000);
        assert.equal(
          agent.count(/filtering container /g),
          7,
          `A, B, R, R2, C, D, E once each:\n${tail(agent)}`,
        );
        assert.equal(agent.count(/released /g), 3, `B, R, C once each:\n${tail(agent)}`);
        assert.doesNotMatch(agent.log, /could not|containers mode: /, "no errors logged");

        // The agent never exited; on SIGTERM it exits 0 and leaves nothing attached.
        assert.equal(exited, false, "the agent is still running");
        const code = await agent.stop();
        assert.equal(code, 0, tail(agent));
        assert.ok([a, b, r, c, d, e].every(unfiltered), "nothing attached after the agent's exit");
        assert.equal((await tinyfwPrograms(attachMap)).ours, 0, "no program left after exit");
      } finally {
        await agent.stop();
        await removeAll(boxes);
        await host.delete();
      }
    });
  });
});
