import assert from "node:assert/strict";
import { defaultPolicy } from "../../../lib/policy/model/default.ts";
import { loadPolicyFile, parsePolicyText } from "../../../lib/policy/load.ts";
import {
  type ContainerIdentity,
  fallbackSelection,
  selectForContainer,
  selectForInterface,
  selectionForContainer,
  selectionForInterface,
  selectsContainer,
  selectsInterface,
} from "../../../lib/policy/model/select.ts";
import type { Policy, PolicySet, Selector } from "../../../lib/policy/model/types.ts";

function policy(name: string, selector?: Selector): Policy {
  const p: Policy = { name, defaultAction: "allow", rules: [] };
  if (selector) p.selector = selector;
  return p;
}

function set(...policies: Policy[]): PolicySet {
  return { policies };
}

const c = (namespace: string, labels: Record<string, string> = {}): ContainerIdentity => ({
  namespace,
  labels,
});

Deno.test("select: no policy file means the built-in default, for interfaces and containers", () => {
  assert.deepEqual(selectForInterface(null, "eth0"), defaultPolicy());
  assert.deepEqual(selectForContainer(null, c("k8s.io", { app: "web" })), defaultPolicy());
  assert.equal(selectionForInterface(null, "eth0").reason, "default");
  assert.equal(selectionForContainer(null, c("default")).reason, "default");
});

Deno.test("select: an interface gets the first policy naming it", () => {
  const a = policy("a", { interfaces: ["eth0", "eth1"] });
  const b = policy("b", { interfaces: ["eth1", "eth2"] });
  const s = set(a, b);
  assert.equal(selectForInterface(s, "eth0"), a);
  assert.equal(selectForInterface(s, "eth1"), a, "the first one wins");
  assert.equal(selectForInterface(s, "eth2"), b);
  assert.deepEqual(selectionForInterface(s, "eth2"), { policy: b, reason: "selector" });
});

Deno.test("select: an interface nobody names gets the fallback, wherever it is, else the default", () => {
  const fb = policy("fallback");
  const named = policy("named", { interfaces: ["eth0"] });
  assert.equal(
    selectForInterface(set(fb, named), "eth0"),
    named,
    "a selector wins over an earlier fallback",
  );
  assert.equal(selectForInterface(set(fb, named), "eth9"), fb);
  assert.equal(selectForInterface(set(named, fb), "eth9"), fb);
  assert.deepEqual(selectionForInterface(set(named, fb), "eth9"), {
    policy: fb,
    reason: "fallback",
  });
  const second = policy("second");
  assert.equal(selectForInterface(set(named, fb, second), "eth9"), fb, "the first fallback");
  assert.deepEqual(selectForInterface(set(named), "eth9"), defaultPolicy());
  assert.equal(selectionForInterface(set(named), "eth9").reason, "default");
});

Deno.test("select: interface names are matched exactly", () => {
  const s = set(policy("a", { interfaces: ["eth0"] }));
  for (const name of ["eth", "eth00", "ETH0", "eth0 ", "veth0"]) {
    assert.equal(selectionForInterface(s, name).reason, "default", name);
  }
});

Deno.test("select: container selectors never select interfaces and the reverse", () => {
  const containers = policy("containers", { namespace: "eth0" });
  const labelled = policy("labelled", { labels: { eth0: "eth0" } });
  const hosts = policy("hosts", { interfaces: ["eth0"] });
  const both = policy("both", { interfaces: ["eth0"], labels: { app: "web" } });
  assert.equal(selectsInterface(containers, "eth0"), false);
  assert.equal(selectsInterface(labelled, "eth0"), false);
  assert.equal(selectsInterface(both, "eth0"), false, "a selector with both matches nothing");
  assert.equal(selectsInterface(hosts, "eth0"), true);
  assert.equal(selectsContainer(hosts, c("eth0", { eth0: "eth0" })), false);
  assert.equal(selectsContainer(both, c("k8s.io", { app: "web" })), false);
  assert.equal(selectForInterface(set(containers, labelled, both, hosts), "eth0"), hosts);
  assert.equal(
    selectionForContainer(set(hosts, both), c("k8s.io", { app: "web" })).reason,
    "default",
  );
});

Deno.test("select: a container's namespace must equal the selector's, when given", () => {
  const p = policy("p", { namespace: "k8s.io" });
  assert.equal(selectsContainer(p, c("k8s.io")), true);
  assert.equal(selectsContainer(p, c("k8s.io", { any: "label" })), true);
  assert.equal(selectsContainer(p, c("default")), false);
  assert.equal(selectsContainer(p, c("K8S.IO")), false, "case-sensitive");
  assert.equal(selectsContainer(p, c("")), false);
});

Deno.test("select: every selector label must be on the container with the same value", () => {
  const p = policy("p", { labels: { app: "web", tier: "front" } });
  assert.equal(selectsContainer(p, c("any", { app: "web", tier: "front" })), true);
  assert.equal(selectsContainer(p, c("other", { app: "web", tier: "front", x: "y" })), true);
  assert.equal(selectsContainer(p, c("any", { app: "web" })), false, "a label missing");
  assert.equal(
    selectsContainer(p, c("any", { app: "web", tier: "back" })),
    false,
    "a value differs",
  );
  assert.equal(
    selectsContainer(p, c("any", { app: "Web", tier: "front" })),
    false,
    "case-sensitive",
  );
  assert.equal(selectsContainer(p, c("any", {})), false);
  const empty = policy("e", { labels: { flag: "" } });
  assert.equal(selectsContainer(empty, c("any", { flag: "" })), true, "an empty value is a value");
  assert.equal(selectsContainer(empty, c("any", {})), false);
});

Deno.test("select: namespace and labels together must both match", () => {
  const p = policy("p", { namespace: "k8s.io", labels: { app: "web" } });
  assert.equal(selectsContainer(p, c("k8s.io", { app: "web" })), true);
  assert.equal(selectsContainer(p, c("default", { app: "web" })), false);
  assert.equal(selectsContainer(p, c("k8s.io", { app: "db" })), false);
});

Deno.test("select: inherited object properties are not labels", () => {
  const p = policy("p", { labels: { constructor: "x" } });
  assert.equal(selectsContainer(p, c("any", {})), false);
  const q = policy("q", { labels: { toString: "y", hasOwnProperty: "z" } });
  assert.equal(selectsContainer(q, c("any", {})), false);
  assert.equal(selectsContainer(q, c("any", { toString: "y", hasOwnProperty: "z" })), true);
});

Deno.test("select: a container gets the first matching policy, else the fallback, else the default", () => {
  const web = policy("web", { namespace: "k8s.io", labels: { app: "web" } });
  const k8s = policy("k8s", { namespace: "k8s.io" });
  const anyWeb = policy("any-web", { labels: { app: "web" } });
  const fb = policy("fallback");
  const s = set(fb, web, k8s, anyWeb);
  assert.equal(selectForContainer(s, c("k8s.io", { app: "web" })), web);
  assert.equal(selectForContainer(s, c("k8s.io", { app: "db" })), k8s);
  assert.equal(selectForContainer(s, c("moby", { app: "web" })), anyWeb);
  assert.equal(selectForContainer(s, c("moby", { app: "db" })), fb);
  assert.deepEqual(selectionForContainer(s, c("moby")), { policy: fb, reason: "fallback" });
  const reordered = set(k8s, web);
  assert.equal(selectForContainer(reordered, c("k8s.io", { app: "web" })), k8s, "file order");
  assert.deepEqual(selectForContainer(set(web, k8s), c("moby")), defaultPolicy());
});

Deno.test("select: an empty selector (built in code) counts as none", () => {
  const empty = policy("empty", {});
  assert.equal(selectsContainer(empty, c("any")), false);
  assert.equal(selectsInterface(empty, "eth0"), false);
  assert.deepEqual(fallbackSelection(set(policy("x", { interfaces: ["a"] }), empty)), {
    policy: empty,
    reason: "fallback",
  });
  assert.equal(selectForInterface(set(empty), "eth0"), empty);
  assert.equal(selectForContainer(set(empty), c("ns")), empty);
});

Deno.test("select: the default policy is one frozen instance, shared by every target", () => {
  const a = selectForInterface(null, "eth0");
  assert.equal(selectForInterface(null, "eth1"), a);
  assert.equal(selectForContainer(set(policy("x", { interfaces: ["eth0"] })), c("ns")), a);
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.rules[0].ports![0]));
  assert.throws(() => a.rules.push(a.rules[0]), TypeError);
  assert.deepEqual(a, defaultPolicy());
});

Deno.test("select: the policies of tests/policies/good/kubernetes.yaml", () => {
  const r = loadPolicyFile(
    new URL("../../policies/good/kubernetes.yaml", import.meta.url).pathname,
  );
  assert.ok(r.ok);
  const name = (id: ContainerIdentity) => selectForContainer(r.set, id).name;
  const payments = { "app.kubernetes.io/name": "payments", tier: "backend" };
  assert.equal(name(c("k8s.io", payments)), "payments");
  assert.equal(name(c("k8s.io", { ...payments, tier: "frontend" })), "k8s-default");
  assert.equal(name(c("moby", payments)), "everything-else");
  assert.equal(selectForInterface(r.set, "eth0").name, "everything-else");
});

Deno.test("select: a loaded file's interface policies", () => {
  const r = parsePolicyText(
    "policies:\n  - name: uplink\n    selector: { interfaces: [eth0] }\n    defaultAction: deny\n" +
      "  - name: lab\n    selector: { interfaces: [eth1, eth2] }\n",
  );
  assert.ok(r.ok);
  assert.equal(selectForInterface(r.set, "eth0").name, "uplink");
  assert.equal(selectForInterface(r.set, "eth2").name, "lab");
  assert.equal(selectForInterface(r.set, "eth3").name, "default");
  assert.equal(selectForContainer(r.set, c("k8s.io")).name, "default");
});
