/**
 * The files of deploy/: the DaemonSet and its ConfigMap hold what a node
 * agent needs (and the policy in it passes tinyfw's own check), the image
 * recipe builds the compiled binary on debian:bookworm-slim with libbpf1, the
 * systemd unit passes `systemd-analyze verify` and is ordered without a
 * cycle, its arguments parse, and every expression of the Grafana dashboard
 * names metrics the agent exports.
 */
import assert from "node:assert/strict";
import { loadAll } from "js-yaml";
import { parseCommandLine, type RunCommand } from "../../lib/cli/mod.ts";
import { agentRegistry } from "../../lib/agent/metrics.ts";
import { parsePolicyText } from "../../lib/policy/load.ts";
import { dashboardExpressions } from "../helpers/dashboard.ts";

const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;

// deno-lint-ignore no-explicit-any
type Doc = any;

function manifests(): Doc[] {
  return loadAll(Deno.readTextFileSync(`${DEPLOY}kubernetes/tinyfw.yaml`)) as Doc[];
}

function runArgs(args: string[]): RunCommand {
  const cmd = parseCommandLine(args);
  assert.equal(cmd.cmd, "run", args.join(" "));
  return cmd as RunCommand;
}

Deno.test("deploy: the DaemonSet runs the agent the way a node needs it", () => {
  const docs = manifests();
  const ds = docs.find((d) => d.kind === "DaemonSet");
  const cm = docs.find((d) => d.kind === "ConfigMap");
  assert.ok(ds && cm, "a DaemonSet and a ConfigMap");
  assert.equal(ds.apiVersion, "apps/v1");
  const pod = ds.spec.template.spec;
  assert.deepEqual(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels);
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.hostPID, true);
  assert.equal(pod.priorityClassName, "system-node-critical");
  assert.deepEqual(pod.tolerations, [{ operator: "Exists" }], "tolerates every taint");
  assert.equal(ds.spec.updateStrategy.type, "RollingUpdate");
  assert.equal(ds.spec.updateStrategy.rollingUpdate.maxSurge, 0);

  const [agent] = pod.containers;
  assert.equal(agent.securityContext.privileged, true);
  assert.ok(agent.resources.requests.cpu && agent.resources.requests.memory, "resource requests");
  const cmd = runArgs(agent.args);
  assert.ok(cmd.cmode, "--cmode");
  assert.equal(cmd.keepOnExit, true, "--keep-on-exit");
  const port = agent.ports.find((p: Doc) => p.name === "metrics");
  assert.equal(cmd.metricsAddr?.port, port.containerPort, "metrics on the probes' port");
  assert.equal(cmd.metricsAddr?.hostname, "0.0.0.0", "probes come to the node's address");
  assert.equal(agent.livenessProbe.httpGet.path, "/healthz");
  assert.equal(agent.readinessProbe.httpGet.path, "/readyz");
  for (const probe of [agent.livenessProbe, agent.readinessProbe, agent.startupProbe]) {
    assert.equal(probe.httpGet.port, "metrics");
  }

  // Volumes: bpffs, the containerd directory (not its socket), /run/tinyfw, the ConfigMap.
  const volume = (path: string) => {
    const m = agent.volumeMounts.find((v: Doc) => v.mountPath === path);
    assert.ok(m, `nothing mounted at ${path}`);
    return pod.volumes.find((v: Doc) => v.name === m.name);
  };
  assert.equal(volume("/sys/fs/bpf").hostPath.path, "/sys/fs/bpf");
  const containerd = volume("/run/containerd");
  assert.equal(containerd.hostPath.path, "/run/containerd");
  assert.equal(containerd.hostPath.type, "Directory");
  assert.ok(cmd.containerdSocket.startsWith("/run/containerd/"), cmd.containerdSocket);
  assert.equal(volume("/run/tinyfw").hostPath.path, "/run/tinyfw");
  const policyDir = cmd.policy!.slice(0, cmd.policy!.lastIndexOf("/"));
  assert.equal(volume(policyDir).configMap.name, cm.metadata.name);
  assert.equal(cm.metadata.namespace, ds.metadata.namespace);

  // The policy in the ConfigMap is one tinyfw accepts without a warning.
  const file = cmd.policy!.slice(policyDir.length + 1);
  const loaded = parsePolicyText(cm.data[file], file);
  assert.ok(loaded.ok, JSON.stringify(loaded));
  assert.deepEqual(loaded.warnings, []);

  // The init container that mounts bpffs uses the same image.
  assert.equal(pod.initContainers[0].image, agent.image);
});

Deno.test("deploy: the uninstall DaemonSet runs detach on every node with the agent's pins and state", () => {
  const docs = loadAll(
    Deno.readTextFileSync(`${DEPLOY}kubernetes/tinyfw-detach.yaml`),
  ) as Doc[];
  assert.equal(docs.length, 1);
  const pod = docs[0].spec.template.spec;
  const agentPod = manifests().find((d) => d.kind === "DaemonSet").spec.template.spec;
  assert.deepEqual(pod.tolerations, agentPod.tolerations);
  assert.equal(pod.hostNetwork, true, "detach looks at the node's interfaces");
  const [c] = pod.containers;
  assert.match(c.command.join(" "), /\/usr\/local\/bin\/tinyfw detach &&/);
  assert.equal(c.image, agentPod.containers[0].image);
  for (const path of ["/sys/fs/bpf", "/run/tinyfw"]) {
    const mount = c.volumeMounts.find((m: Doc) => m.mountPath === path);
    assert.ok(mount, `nothing at ${path}`);
    const volume = pod.volumes.find((v: Doc) => v.name === mount.name);
    assert.equal(volume.hostPath.path, path);
  }
});

Deno.test("deploy: the image recipe builds the compiled binary onto debian:bookworm-slim with libbpf1", () => {
  const text = Deno.readTextFileSync(`${DEPLOY}Containerfile`);
  const stages = text.split(/^FROM /m).slice(1);
  assert.ok(stages.length >= 2, "a build stage and a runtime stage");
  const runtime = stages.at(-1)!;
  assert.match(runtime, /^debian:bookworm-slim\n/);
  assert.match(runtime, /apt-get install[^\n]*(\\\n[^\n]*)*\blibbpf1\b/);
  assert.match(runtime, /COPY --from=build \/src\/tinyfw \/usr\/local\/bin\/tinyfw/);
  assert.match(runtime, /ENTRYPOINT \["\/usr\/local\/bin\/tinyfw"\]/);
  assert.match(stages[0], /scripts\/compile\.sh/);
  const deno = JSON.parse(Deno.readTextFileSync(`${DEPLOY}../deno.json`));
  assert.ok(
    deno.tasks.compile.includes("scripts/compile.sh"),
    "the recipe runs what the task runs",
  );
  // The Deno it installs is the one scripts/setup.sh pins.
  const pinned = /DENO_VERSION=(\S+)/.exec(
    Deno.readTextFileSync(`${DEPLOY}../scripts/setup.sh`),
  )![1];
  assert.match(stages[0], new RegExp(`deno@${pinned.replaceAll(".", "\\.")}\\b`));
});

/** The [Unit]/[Service]/[Install] entries of a unit file (repeated keys in order). */
function unitEntries(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1];
      continue;
    }
    const eq = line.indexOf("=");
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...out.get(key) ?? [], line.slice(eq + 1)]);
  }
  return out;
}

function words(entries: Map<string, string[]>, key: string): string[] {
  return (entries.get(key) ?? []).flatMap((v) => v.split(/\s+/)).filter(Boolean);
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

const UNIT_DIRS = ["/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"];

/**
 * Whether starting `unit` must wait for itself: a path of After= (and
 * reversed Before=) edges from it back to it, through this machine's units.
 */
function orderingCycle(unit: string, own: Map<string, string[]>): string[] | null {
  const after = new Map<string, Set<string>>();
  const edge = (later: string, earlier: string) => {
    if (!after.has(later)) after.set(later, new Set());
    after.get(later)!.add(earlier);
  };
  const addUnit = (name: string, e: Map<string, string[]>) => {
    for (const a of words(e, "Unit.After")) edge(name, a);
    for (const b of words(e, "Unit.Before")) edge(b, name);
  };
  for (const dir of UNIT_DIRS) {
    try {
      for (const f of Deno.readDirSync(dir)) {
        if (!f.isFile || f.name === unit || !/\.(service|target|socket|mount)$/.test(f.name)) {
          continue;
        }
        addUnit(f.name, unitEntries(Deno.readTextFileSync(`${dir}/${f.name}`)));
      }
    } catch {
      // no such directory here
    }
  }
  addUnit(unit, own);
  const path: string[] = [];
  const seen = new Set<string>();
  const visit = (u: string): boolean => {
    if (path.includes(u)) return true;
    if (seen.has(u)) return false;
    seen.add(u);
    path.push(u);
    for (const e of after.get(u) ?? []) {
      if (e === unit || visit(e)) {
        path.push(e);
        return true;
      }
    }
    path.pop();
    return false;
  };
  return visit(unit) ? path : null;
}

Deno.test("deploy: the systemd unit starts before the network, survives restarts, and passes systemd-analyze verify", async () => {
  const text = Deno.readTextFileSync(`${DEPLOY}systemd/tinyfw.service`);
  const unit = unitEntries(text);
  assert.deepEqual(unit.get("Service.Restart"), ["always"]);
  assert.deepEqual(unit.get("Service.RuntimeDirectory"), ["tinyfw"]);
  assert.deepEqual(unit.get("Service.RuntimeDirectoryPreserve"), ["yes"]);
  assert.ok(words(unit, "Unit.RequiresMountsFor").includes("/sys/fs/bpf"));
  assert.ok(words(unit, "Unit.Before").includes("network-pre.target"));
  assert.ok(words(unit, "Unit.Wants").includes("containerd.service"));
  assert.ok(!words(unit, "Unit.After").includes("containerd.service"));
  // containerd.service is ordered after network.target, itself after network-pre.target.
  const units = UNIT_DIRS.map((d) => `${d}/containerd.service`);
  assert.ok(units.some((u) => exists(u)), "containerd's unit is not installed");
  assert.equal(orderingCycle("tinyfw.service", unit), null);
  // The same check finds the cycle an After=containerd.service would make.
  const cyclic = new Map(unit);
  cyclic.set("Unit.After", [...unit.get("Unit.After") ?? [], "containerd.service"]);
  assert.ok(orderingCycle("tinyfw.service", cyclic), "the cycle check finds nothing");

  // Its arguments, and the ones the environment file gives, are valid.
  const env = /^Environment="TINYFW_ARGS=([^"]*)"$/m.exec(text);
  assert.ok(env, "a default TINYFW_ARGS");
  assert.equal(runArgs(env[1].split(" ")).keepOnExit, true);
  const defaults = Deno.readTextFileSync(`${DEPLOY}systemd/tinyfw.default`);
  const args = /^TINYFW_ARGS="([^"]*)"$/m.exec(defaults);
  assert.ok(args, "tinyfw.default sets TINYFW_ARGS");
  const run = runArgs(args[1].split(" "));
  assert.equal(run.keepOnExit, true);
  assert.equal(run.metricsAddr?.hostname, "127.0.0.1");
  assert.match(unit.get("Service.ExecStart")![0], /^\/usr\/local\/bin\/tinyfw \$TINYFW_ARGS$/);

  // systemd-analyze verify wants the executable to exist: the unit as installed from
  // this checkout, with /usr/local/bin/tinyfw standing for a wrapper of main.ts.
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-unit-" });
  try {
    const exe = `${dir}/tinyfw`;
    Deno.writeTextFileSync(
      exe,
      `#!/bin/sh\nexec ${Deno.execPath()} run -A ${DEPLOY}../main.ts "$@"\n`,
      { mode: 0o755 },
    );
    Deno.writeTextFileSync(
      `${dir}/tinyfw.service`,
      text.replaceAll("/usr/local/bin/tinyfw", exe),
    );
    const out = await new Deno.Command("systemd-analyze", {
      args: ["verify", `${dir}/tinyfw.service`],
      stdout: "piped",
      stderr: "piped",
      env: { SYSTEMD_LOG_COLOR: "0" },
    }).output();
    const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, said);
    assert.equal(said.trim(), "", said);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The metric names the agent exports (in containers mode: all of them). */
function exportedNames(): Set<string> {
  const registry = agentRegistry({
    counters: () => [],
    outcomes: () => ({}),
    samplesLost: () => 0n,
    attachments: () => [],
    reloads: { ok: 0, failed: 0 },
    ready: () => true,
    containers: { connected: true },
  });
  const names = new Set<string>();
  for (const m of registry.getMetricsAsArray()) {
    const name = (m as unknown as { name: string }).name;
    names.add(name);
    if ((m as unknown as { type: string }).type === "histogram") {
      for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
    }
  }
  return names;
}

Deno.test("deploy: every expression of the Grafana dashboard names metrics the agent exports", () => {
  const exported = exportedNames();
  const exprs = dashboardExpressions();
  assert.ok(exprs.length >= 15, `only ${exprs.length} expressions`);
  const used = new Set<string>();
  for (const e of exprs) {
    // Identifiers outside label matchers' strings and outside by (...) / range selectors.
    const bare = e.replace(/"[^"]*"/g, '""').replace(/\b(by|without)\s*\([^)]*\)/g, "")
      .replace(/\[[^\]]*\]/g, "");
    const metrics = [...bare.matchAll(/\b(tinyfw_[a-z_]+|process_[a-z_]+)\b/g)].map((m) => m[1]);
    assert.ok(metrics.length > 0, `no tinyfw metric in ${e}`);
    for (const m of metrics) {
      assert.ok(exported.has(m), `${m} (in ${e}) is not a metric the agent exports`);
      used.add(m);
    }
  }
  // The dashboard shows every tinyfw metric (a histogram through its buckets).
  for (const name of exported) {
    if (!name.startsWith("tinyfw_") || /_(bucket|sum|count)$/.test(name)) continue;
    assert.ok(used.has(name) || used.has(`${name}_bucket`), `the dashboard does not show ${name}`);
  }
});
