/** The workload table (tasks grouped by network namespace) and veth pairing by nsid. Pure. */
import assert from "node:assert/strict";
import {
  CRI_KIND_LABEL,
  describeWorkload,
  identityOf,
  type Task,
  taskKey,
  WorkloadTable,
} from "../../lib/containers/workloads.ts";
import { isForeignVeth, vethPairsTo } from "../../lib/containers/netns.ts";
import type { Link } from "../../lib/netlink/link.ts";

function task(namespace: string, containerId: string, labels: Record<string, string> = {}): Task {
  return { namespace, containerId, pid: 100, labels };
}

Deno.test("workloads: tasks sharing a namespace are one workload, released with the last task", () => {
  const table = new WorkloadTable();
  const a = table.add(task("default", "a", { app: "web" }), "4:1");
  assert.equal(a.created, true);
  const b = table.add(task("default", "b", { app: "db" }), "4:1");
  assert.equal(b.created, false);
  assert.equal(b.workload, a.workload);
  const c = table.add(task("default", "c"), "4:2");
  assert.equal(c.created, true);
  assert.equal(table.size, 2);
  assert.deepEqual(identityOf(a.workload), { namespace: "default", labels: { app: "web" } });

  assert.deepEqual(table.remove(taskKey("default", "a")), { workload: a.workload, emptied: false });
  // The first task left: the next one now selects the policy.
  assert.deepEqual(identityOf(a.workload)?.labels, { app: "db" });
  assert.deepEqual(table.remove(taskKey("default", "b")), { workload: a.workload, emptied: true });
  assert.equal(table.get("4:1"), undefined);
  assert.deepEqual(table.remove(taskKey("default", "b")), { emptied: false });
  assert.deepEqual(table.taskKeys(), ["default/c"]);
});

Deno.test("workloads: a pod is selected by its sandbox's labels, whatever joined first", () => {
  const table = new WorkloadTable();
  const app = task("k8s.io", "app", {
    [CRI_KIND_LABEL]: "container",
    "io.kubernetes.pod.name": "web-1",
    "io.kubernetes.pod.namespace": "shop",
  });
  const sandbox = task("k8s.io", "sandbox", {
    [CRI_KIND_LABEL]: "sandbox",
    "io.kubernetes.pod.name": "web-1",
    "io.kubernetes.pod.namespace": "shop",
    app: "web",
  });
  const { workload } = table.add(app, "4:9");
  table.add(sandbox, "4:9");
  assert.equal(identityOf(workload)?.labels.app, "web");
  assert.equal(describeWorkload(workload), "pod shop/web-1");
  assert.equal(table.size, 1);
});

Deno.test("workloads: a task seen again in another namespace moves there", () => {
  const table = new WorkloadTable();
  table.add(task("default", "a"), "4:1");
  const moved = table.add(task("default", "a"), "4:2");
  assert.equal(moved.created, true);
  assert.equal(table.get("4:1"), undefined);
  assert.equal(table.netnsOf("default/a"), "4:2");
});

function link(index: number, extra: Partial<Link>): Link {
  return {
    index,
    name: `if${index}`,
    mtu: 1500,
    up: true,
    operState: "up",
    flags: 0,
    ...extra,
  } as Link;
}

Deno.test("netns: veth pairs are found by nsid and peer ifindex, not by name", () => {
  const links = [
    link(1, { name: "lo" }),
    link(5, { name: "cali12345", kind: "veth", linkNetnsid: 3, linkIndex: 2 }),
    link(6, { name: "eth0", kind: "veth", linkIndex: 7 }), // both ends here
    link(8, { name: "lxc-b", kind: "veth", linkNetnsid: 4, linkIndex: 2 }),
    link(9, { name: "veth9", kind: "veth", linkNetnsid: 3, linkIndex: 11 }),
    link(10, { name: "macv", kind: "macvlan", linkNetnsid: 3, linkIndex: 4 }),
  ];
  assert.deepEqual(vethPairsTo(links, 3), [
    { hostIndex: 5, hostName: "cali12345", peerIndex: 2 },
    { hostIndex: 9, hostName: "veth9", peerIndex: 11 },
  ]);
  assert.deepEqual(vethPairsTo(links, -1), []);
  assert.deepEqual(links.filter(isForeignVeth).map((l) => l.index), [5, 8, 9]);
});
