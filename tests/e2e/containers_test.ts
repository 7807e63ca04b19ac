/**
 * Containers mode end to end (SPEC §4): a private containerd and runc, real
 * containers in their own network namespaces (through the CNI bridge plugin
 * and through plain veth pairs), in the `default` and `k8s.io` namespaces,
 * and the agent as a user runs it (`main.ts --cmode`).
 */
import assert from "node:assert/strict";
import { AgentProcess } from "../helpers/agent_process.ts";
import {
  type Box,
  cniBox,
  eventually,
  filtered,
  peerXdpName,
  removeAll,
  unfiltered,
  vethBox,
  withPolicyFile,
} from "../helpers/boxes.ts";
import { type CniNetwork, createCniNetwork, deleteCniNetwork } from "../helpers/cni.ts";
import { type PrivateContainerd, withContainerd } from "../helpers/containerd.ts";
import { reach, startServer } from "../helpers/topology.ts";

const POLICY = `policies:
  - name: web
    selector:
      namespace: k8s.io
      labels: { app: web }
    defaultAction: deny
    rules:
      - name: http-in
        action: allow
        direction: ingress
        protocol: tcp
        ports: [8080]
      - name: to-db
        action: allow
        direction: egress
        protocol: tcp
        ports: [5432]
  - name: db
    selector:
      labels: { app: db }
    defaultAction: deny
    rules:
      - name: pg-in
        action: allow
        direction: ingress
        protocol: tcp
        ports: [5432]
  - name: rest
    rules:
      - name: no-telnet
        action: deny
        direction: both
        protocol: tcp
        ports: [23]
`;

/** What {@link withCmode} gives a test. */
interface Cmode {
  cd: PrivateContainerd;
  net: CniNetwork;
  agent: AgentProcess;
  /** Boxes the test made: removed afterwards. */
  boxes: Box[];
  /** The agent's policy file, when it has one. */
  file?: string;
}

/**
 * A private containerd, a CNI bridge network and the agent in containers mode
 * (with `policy` as its file, if given, and `args`), started and resynced;
 * afterwards the agent is stopped (it must exit 0) and everything removed.
 */
async function withCmode(
  policy: string | null,
  args: string[],
  fn: (c: Cmode) => Promise<void>,
): Promise<void> {
  await withContainerd(async (cd) => {
    const go = async (file?: string) => {
      const net = await createCniNetwork();
      const boxes: Box[] = [];
      const agent = AgentProcess.start([
        "--cmode",
        "--containerd-socket",
        cd.socket,
        ...(file ? ["--policy", file] : []),
        ...args,
      ]);
      try {
        await agent.waitFor(/containerd resync/);
        await fn({ cd, net, agent, boxes, file });
      } finally {
        const code = await agent.stop();
        await removeAll(boxes);
        await deleteCniNetwork(net);
        assert.equal(code, 0, agent.log);
      }
    };
    await (policy === null ? go() : withPolicyFile(policy, go));
  });
}

Deno.test("cmode: labels select each container's policy, enforced into and out of it (CNI bridge and plain veth, default and k8s.io)", async () => {
  await withCmode(POLICY, [], async ({ cd, net, agent, boxes }) => {
    const web = await cniBox(cd, net, { namespace: "k8s.io", labels: { app: "web" } });
    boxes.push(web);
    const db = await cniBox(cd, net, { namespace: "default", labels: { app: "db" } });
    boxes.push(db);
    const other = await cniBox(cd, net, { namespace: "default", labels: { app: "other" } });
    boxes.push(other);
    const plain = await vethBox(cd, { namespace: "default" });
    boxes.push(plain);
    for (const b of boxes) {
      assert.ok(await eventually(() => filtered(b)), `${b.ns.name} filtered:\n${agent.log}`);
    }
    await agent.waitForCount(/filtering container \S+: policy/g, 4);
    assert.equal(agent.count(/filtering container k8s\.io\/\S+: policy web/g), 1);
    assert.equal(agent.count(/filtering container default\/\S+: policy db/g), 1);
    assert.equal(agent.count(/filtering container default\/\S+: policy rest/g), 2);

    await startServer(web.ns, { tcp: [8080, 9000] });
    await startServer(db.ns, { tcp: [5432, 9000] });
    await startServer(other.ns, { tcp: [23, 9000] });
    await startServer(plain.ns, { tcp: [23, 9000] });
    const cases: [Box, Box | string, number, boolean, string][] = [
      [other, web, 8080, true, "web lets 8080 in"],
      [other, web, 9000, false, "web denies the rest in"],
      [web, db, 5432, true, "web may reach the db; the db lets it in"],
      [web, db, 9000, false, "web may send nothing else (egress)"],
      [web, other, 9000, false, "web's egress deny-by-default, to anyone"],
      [other, db, 5432, true, "the fallback sends anything but telnet"],
      [other, db, 9000, false, "db denies all but 5432 in"],
      [db, other, 9000, false, "db sends nothing (egress default deny)"],
      [web, other, 23, false, "telnet denied out of web and into other"],
      [db, web, 8080, false, "db's egress is denied even where web's ingress allows"],
    ];
    for (const [from, to, port, want, why] of cases) {
      const host = typeof to === "string" ? to : to.ip4;
      assert.equal(await reach(from.ns, "tcp", host, port), want, why);
    }
    // The plain veth's container, from and to the host end of its veth.
    assert.equal(await reachHost(plain.ip4, 9000), true, "plain: 9000 in");
    assert.equal(await reachHost(plain.ip4, 23), false, "plain: telnet in denied");
    assert.equal(await reachHost(plain.ip6!, 9000), true, "plain: 9000 in, IPv6");
    assert.equal(await reachHost(plain.ip6!, 23), false, "plain: telnet in denied, IPv6");

    for (const b of boxes) await b.container!.stop();
    for (const b of boxes) {
      assert.ok(await eventually(() => unfiltered(b)), `${b.ns.name} released:\n${agent.log}`);
    }
    await agent.waitForCount(/released /g, 4);
  });
});

const POD_POLICY = `policies:
  - name: shop-web
    selector:
      namespace: k8s.io
      labels: { app: web }
    defaultAction: deny
    rules:
      - name: http-in
        action: allow
        direction: ingress
        protocol: tcp
        ports: [8080]
`;

Deno.test("cmode: a pod (sandbox + app container in one namespace) gets one attachment, selected by the sandbox's labels; host-network containers get none", async () => {
  await withCmode(POD_POLICY, [], async ({ cd, net, agent, boxes }) => {
    const pod = await cniBox(cd, net, {
      namespace: "k8s.io",
      labels: {
        "io.cri-containerd.kind": "sandbox",
        "io.kubernetes.pod.name": "web-0",
        "io.kubernetes.pod.namespace": "shop",
        app: "web",
      },
    });
    boxes.push(pod);
    // The app container joins the sandbox's namespace; its own labels select nothing.
    const app = await cd.run({
      namespace: "k8s.io",
      labels: {
        "io.cri-containerd.kind": "container",
        "io.kubernetes.container.name": "nginx",
        "io.kubernetes.pod.name": "web-0",
        "io.kubernetes.pod.namespace": "shop",
      },
      netns: pod.ns.path,
      cmd: ["sleep", "3600"],
    });
    const client = await cniBox(cd, net, { namespace: "default" });
    boxes.push(client);
    const hostNet = await cd.run({ namespace: "default", cmd: ["sleep", "3600"] });
    try {
      await agent.waitFor(/joins pod shop\/web-0/);
      await agent.waitFor(/uses the host network: no attachment/);
      assert.ok(await eventually(() => filtered(pod)), agent.log);
      assert.equal(agent.count(/filtering pod shop\/web-0: policy shop-web/g), 1);
      assert.equal(agent.count(/filtering /g), 2, "the pod and the client, nothing else");
      await startServer(pod.ns, { tcp: [8080, 9000] });
      assert.equal(await reach(client.ns, "tcp", pod.ip4, 8080), true);
      assert.equal(await reach(client.ns, "tcp", pod.ip4, 9000), false);
      // The app container goes: the sandbox keeps the pod's namespace filtered.
      await app.stop();
      await agent.waitFor(/released|task exited/, 5000).catch(() => {});
      assert.equal(agent.count(/released /g), 0, agent.log);
      assert.ok(filtered(pod));
      assert.equal(await reach(client.ns, "tcp", pod.ip4, 9000), false);
    } finally {
      await app.stop();
      await hostNet.stop();
    }
    await pod.container!.stop();
    assert.ok(await eventually(() => unfiltered(pod)), agent.log);
    await agent.waitFor(/released k8s\.io\/\S+ \(task exited\): policy shop-web/);
  });
});

Deno.test("cmode: containers running before the agent starts are filtered at its start", async () => {
  await withContainerd(async (cd) => {
    await withPolicyFile(POLICY, async (file) => {
      const net = await createCniNetwork();
      const boxes: Box[] = [];
      let agent: AgentProcess | undefined;
      try {
        const web = await cniBox(cd, net, { namespace: "k8s.io", labels: { app: "web" } });
        boxes.push(web);
        const db = await cniBox(cd, net, { namespace: "default", labels: { app: "db" } });
        boxes.push(db);
        const started = performance.now();
        agent = AgentProcess.start(["--cmode", "--containerd-socket", cd.socket, "--policy", file]);
        assert.ok(await eventually(() => boxes.every((b) => filtered(b)), 10_000), agent.log);
        const ms = Math.round(performance.now() - started);
        console.log(`2 running containers filtered ${ms} ms after the agent process was spawned`);
        await agent.waitFor(/containerd resync: 2 tasks, 2 filtered network namespaces \(2 new/);
        await startServer(db.ns, { tcp: [5432, 9000] });
        assert.equal(await reach(web.ns, "tcp", db.ip4, 5432), true);
        assert.equal(await reach(web.ns, "tcp", db.ip4, 9000), false);
      } finally {
        const code = agent ? await agent.stop() : 0;
        await removeAll(boxes);
        await deleteCniNetwork(net);
        assert.equal(code, 0, agent?.log);
      }
    });
  });
});

/** A TCP connection from here (the host) to `address` (a plain box: its veth's host end is ours). */
async function reachHost(address: string, port: number): Promise<boolean> {
  const args = [
    "run",
    "--allow-all",
    "--quiet",
    new URL("../helpers/netpeer.ts", import.meta.url).pathname,
    "tcp",
    address,
    String(port),
    "1500",
  ];
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "null" })
    .output();
  return out.code === 0;
}

Deno.test("cmode: --namespace follows only the namespaces named", async () => {
  await withCmode(null, ["--namespace", "k8s.io"], async ({ cd, net, agent, boxes }) => {
    const followed = await cniBox(cd, net, { namespace: "k8s.io" });
    boxes.push(followed);
    const ignored = await cniBox(cd, net, { namespace: "default" });
    boxes.push(ignored);
    assert.ok(await eventually(() => filtered(followed)), agent.log);
    await agent.waitForCount(/filtering container k8s\.io\//g, 1);
    // The ignored container's veth was filtered as unclaimed (with the fallback) when it
    // appeared; no task of a followed namespace claims it, so its own end never is.
    assert.equal(peerXdpName(ignored), "", agent.log);
    assert.equal(agent.count(/filtering container default\//g), 0);
  });
});

Deno.test("cmode: containerd absent at start: the agent says so once, keeps retrying, and connects when it comes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-nocd-" });
  const socket = `${dir}/containerd.sock`;
  const agent = AgentProcess.start(["--cmode", "--containerd-socket", socket]);
  try {
    await agent.waitFor(/containerd at \S+ is unreachable \(containerd is not reachable at/);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(agent.count(/is unreachable/g), 1, "repeated failures are not logged at info");
    await withContainerd(async (cd) => {
      // The private containerd listens elsewhere: point our path at it.
      await Deno.symlink(cd.socket, socket);
      await agent.waitFor(/connected to containerd/, 15_000);
      await agent.waitFor(/containerd resync: 0 tasks/);
      assert.equal(await agent.stop(), 0, agent.log);
    });
  } finally {
    await agent.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cmode: a policy reload switches every container to its newly selected policy at once", async () => {
  const first = `policies:
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
`;
  // The same containers now select another policy, which lets 9000 in too.
  const second = `policies:
  - name: web-v2
    selector:
      labels: { app: web }
    defaultAction: deny
    rules:
      - name: http-and-9000-in
        action: allow
        direction: ingress
        protocol: tcp
        ports: [8080, 9000]
`;
  await withCmode(first, [], async ({ cd, net, agent, boxes, file }) => {
    const web = await cniBox(cd, net, { namespace: "default", labels: { app: "web" } });
    boxes.push(web);
    const client = await cniBox(cd, net, { namespace: "default" });
    boxes.push(client);
    assert.ok(await eventually(() => boxes.every((b) => filtered(b))), agent.log);
    await startServer(web.ns, { tcp: [8080, 9000] });
    assert.equal(await reach(client.ns, "tcp", web.ip4, 8080), true);
    assert.equal(await reach(client.ns, "tcp", web.ip4, 9000), false);

    await Deno.writeTextFile(`${file}.tmp`, second);
    await Deno.rename(`${file}.tmp`, file!);
    await agent.waitFor(/policy reloaded/);
    assert.match(agent.log, /container default\/\S+ now uses policy web-v2 \(was web\)/);
    assert.equal(await reach(client.ns, "tcp", web.ip4, 9000), true, "9000 in after reload");
    assert.equal(await reach(client.ns, "tcp", web.ip4, 8080), true, "8080 still in");
    // The label-less client went from the built-in default to the built-in default.
    assert.doesNotMatch(agent.log, new RegExp(`${client.container!.id} now uses`));
  });
});
