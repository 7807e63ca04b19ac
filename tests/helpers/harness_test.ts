/**
 * The container test harness itself, against real components: a private
 * containerd (tests/helpers/containerd.ts), a network namespace wired with the
 * CNI bridge plugin (tests/helpers/cni.ts) and busybox containers in it.
 *
 * Shows: a "pod" container in `k8s.io` with labels serves TCP on its CNI
 * address, reachable from the host through the bridge; a second container in
 * `default` joins the same namespace path; `pid()` is the task's init, a child
 * of its shim; `exec` returns output and exit codes; containers survive a
 * SIGKILLed containerd and are listed again after a restart; stop() leaves no
 * task, shim, namespace, bridge or temp dir behind.
 */
import assert from "node:assert/strict";
import { isProcessAlive, listShims, parentPid, PrivateContainerd } from "./containerd.ts";
import { cniAdd, cniDel, type CniNetwork, createCniNetwork, deleteCniNetwork } from "./cni.ts";
import { Netns, run } from "./netns.ts";

const PORT = 8080;

/** Sends `msg` over TCP and returns everything the server answers before closing. */
async function exchange(host: string, port: number, msg: string): Promise<string> {
  const conn = await Deno.connect({ hostname: host, port });
  try {
    await conn.write(new TextEncoder().encode(msg));
    await conn.closeWrite();
    return await new Response(conn.readable).text();
  } finally {
    try {
      conn.close();
    } catch {
      // closed by reading to the end
    }
  }
}

/** {@link exchange}, retried until the server listens (5 s at most). */
async function exchangeWhenUp(host: string, port: number, msg: string): Promise<string> {
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      return await exchange(host, port, msg);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function netnsInode(path: string): number {
  return Deno.statSync(path).ino!;
}

Deno.test("containerd harness: private containerd, CNI pod network, restart, cleanup", async () => {
  const times: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      times[name] = Math.round(performance.now() - t0);
    }
  };

  let cd: PrivateContainerd | undefined;
  let ns: Netns | undefined;
  let net: CniNetwork | undefined;
  let cniAdded = false;
  const attach = { containerId: "", netns: "" };
  try {
    cd = await timed("containerd start", () => PrivateContainerd.start());
    const firstPid = cd.pid;
    assert.ok(isProcessAlive(firstPid));

    ns = await Netns.create("tfwc");
    net = await createCniNetwork();
    attach.containerId = `sandbox-${ns.name}`;
    attach.netns = ns.path;
    const ip = await timed("cni add", () => cniAdd(net!, attach));
    cniAdded = true;
    assert.match(ip.ip4, /^10\.88\.\d+\.\d+$/);
    assert.equal(ip.gateway4, ip.ip4.replace(/\.\d+$/, ".1"));
    assert.match(await ns.ip("-4", "addr", "show", "dev", "eth0"), new RegExp(ip.ip4));
    assert.match((await run(["ip", "link", "show", ip.hostVeth])).stdout, new RegExp(net.bridge));

    // The "pod": a k8s.io container with CRI-like labels in the CNI namespace,
    // an echo server that also keeps what it got in /tmp/got.
    const labels = {
      "io.cri-containerd.kind": "sandbox",
      "io.kubernetes.pod.name": "web",
      "io.kubernetes.pod.namespace": "default",
    };
    const web = await timed("run web", () =>
      cd!.run({
        namespace: "k8s.io",
        labels,
        netns: ns!.path,
        cmd: ["nc", "-ll", "-p", String(PORT), "-e", "sh", "-c", "tee -a /tmp/got"],
      }));
    assert.equal(await exchangeWhenUp(ip.ip4, PORT, "hello\n"), "hello\n");
    const got = await timed("exec", () => web.exec(["cat", "/tmp/got"]));
    assert.equal(got.code, 0);
    assert.equal(got.stdout, "hello\n");
    const failing = await web.exec(["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert.deepEqual(failing, { code: 3, stdout: "out\n", stderr: "err\n" });
    const info = JSON.parse((await cd.ctr("k8s.io", "container", "info", web.id)).stdout);
    assert.deepEqual(info.Labels, labels);
    // The root filesystem is read-only, /tmp is not.
    assert.notEqual((await web.exec(["touch", "/x"])).code, 0);

    // A second container, another containerd namespace, the same netns path.
    const side = await timed(
      "run side",
      () => cd!.run({ namespace: "default", netns: ns!.path, cmd: ["sleep", "3600"] }),
    );
    const webPid = await web.pid();
    const sidePid = await side.pid();
    const want = netnsInode(ns.path);
    assert.equal(netnsInode(`/proc/${webPid}/ns/net`), want);
    assert.equal(netnsInode(`/proc/${sidePid}/ns/net`), want);
    assert.notEqual(netnsInode("/proc/self/ns/net"), want);

    // pid() is the task's init (the command), a child of the container's shim.
    const shims = cd.shims();
    assert.equal(shims.length, 2);
    for (const [h, pid, argv0] of [[web, webPid, "nc"], [side, sidePid, "sleep"]] as const) {
      const shim = shims.find((s) => s.id === h.id && s.namespace === h.namespace);
      assert.ok(shim, `shim of ${h.namespace}/${h.id}`);
      assert.equal(parentPid(pid), shim.pid);
      assert.equal(Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0")[0], argv0);
    }

    // A host-network container (no netns) sees the host's namespace.
    const host = await cd.run({ namespace: "default", cmd: ["sleep", "3600"] });
    assert.equal(netnsInode(`/proc/${await host.pid()}/ns/net`), netnsInode("/proc/self/ns/net"));
    await timed("stop host", () => host.stop());
    await host.stop(); // already gone: fine
    assert.deepEqual((await cd.listContainers("default")).sort(), [side.id]);

    // create() + start(): the container exists before its task.
    const later = await cd.create({ namespace: "default", cmd: ["sleep", "3600"] });
    assert.ok((await cd.listContainers("default")).includes(later.id));
    assert.equal(await later.status(), undefined);
    await later.start();
    assert.equal(await later.status(), "RUNNING");
    // left running on purpose: stop() must remove it.

    // containerd SIGKILLed: the containers keep running and serving.
    await timed("containerd kill", () => cd!.kill());
    assert.ok(!isProcessAlive(firstPid));
    assert.ok(!cd.running);
    for (const pid of [webPid, sidePid, ...shims.map((s) => s.pid)]) assert.ok(isProcessAlive(pid));
    assert.equal(await exchangeWhenUp(ip.ip4, PORT, "while down\n"), "while down\n");
    await assert.rejects(cd.ctr("k8s.io", "task", "ls"));

    // ...and a new containerd on the same state lists them again.
    await timed("containerd restart", () => cd!.restart());
    assert.notEqual(cd.pid, firstPid);
    assert.deepEqual(await cd.listTasks("k8s.io"), [
      { id: web.id, pid: webPid, status: "RUNNING" },
    ]);
    const defaults = await cd.listTasks("default");
    assert.deepEqual(defaults.find((t) => t.id === side.id), {
      id: side.id,
      pid: sidePid,
      status: "RUNNING",
    });
    assert.equal(await web.pid(), webPid);
    assert.equal((await web.exec(["cat", "/tmp/got"])).stdout, "hello\nwhile down\n");

    // One container stopped through its handle: task and container gone.
    await timed("stop side", () => side.stop());
    assert.ok(!isProcessAlive(sidePid));
    assert.deepEqual(
      (await cd.listTasks("default")).map((t) => t.id),
      [later.id],
    );

    // The rest goes with stop(), even though `web` and `later` still run.
    const allShims = cd.shims().map((s) => s.pid);
    const laterPid = await later.pid();
    const dir = cd.dir;
    const lastPid = cd.pid;
    await timed("containerd stop", () => cd!.stop());
    for (const pid of [webPid, laterPid, lastPid, ...allShims, ...shims.map((s) => s.pid)]) {
      assert.ok(!isProcessAlive(pid), `pid ${pid} is gone`);
    }
    assert.deepEqual(listShims().filter((s) => s.address.startsWith(dir)), []);
    assert.throws(() => Deno.statSync(dir), Deno.errors.NotFound);
    await cd.stop(); // twice: fine

    // The network side.
    await cniDel(net, attach);
    cniAdded = false;
    await cniDel(net, attach); // again: fine
    const nsName = ns.name;
    await ns.delete();
    ns = undefined;
    assert.doesNotMatch((await run(["ip", "netns", "list"])).stdout, new RegExp(nsName));
    const bridge = net.bridge;
    const dataDir = net.dataDir;
    await deleteCniNetwork(net);
    net = undefined;
    assert.notEqual((await run(["ip", "link", "show", bridge], { allowFailure: true })).code, 0);
    assert.throws(() => Deno.statSync(dataDir), Deno.errors.NotFound);
    console.log("harness timings (ms):", JSON.stringify(times));
  } finally {
    await cd?.stop();
    if (net && cniAdded) await cniDel(net, attach);
    await ns?.delete();
    if (net) await deleteCniNetwork(net);
  }
});
