/**
 * The metrics endpoint end to end (SPEC §5): the agent on a host interface
 * with `--metrics-addr` on its namespace's loopback, scraped over HTTP while
 * the test sends known traffic: per-rule counters equal the packets sent,
 * reload and attachment metrics move, the exposition passes `promtool check
 * metrics`, and a real Prometheus server scrapes it and answers queries.
 */
import assert from "node:assert/strict";
import { AgentProcess } from "../helpers/agent_process.ts";
import {
  httpGet,
  parseExposition,
  promtoolCheck,
  type Sample,
  startPrometheus,
  valueOf,
} from "../helpers/prometheus.ts";
import { asPromql, dashboardExpressions } from "../helpers/dashboard.ts";
import type { Netns } from "../helpers/netns.ts";
import {
  reach,
  SERVER4,
  SERVER6,
  startFlood,
  startServer,
  withTopology,
  xdpOf,
} from "../helpers/topology.ts";

const POLICY = `policies:
  - name: hosts
    rules:
      - name: discard
        action: deny
        protocol: udp
        ports: [9]
      - name: echo
        action: allow
        direction: ingress
        protocol: udp
        ports: [5353]
`;

const ADDR = "127.0.0.1:9464";

async function scrape(ns: Netns): Promise<{ text: string; samples: Sample[] }> {
  const r = await httpGet(ns, `http://${ADDR}/metrics`);
  assert.equal(r.status, 200, r.body);
  return { text: r.body, samples: parseExposition(r.body) };
}

function rule(name: string, action: string, direction = "ingress") {
  return { policy: "hosts", rule: name, action, direction };
}

async function withAgent(
  fn: (t: { server: Netns; client: Netns; agent: AgentProcess; file: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-metrics-" });
  const file = `${dir}/policy.yaml`;
  try {
    await Deno.writeTextFile(file, POLICY);
    await withTopology(async ({ server, client, iface }) => {
      await startServer(server, { udp: [9, 5353] });
      const agent = AgentProcess.start(
        ["--iface", iface, "--policy", file, "--metrics-addr", ADDR],
        server,
      );
      try {
        await agent.waitFor(/serving metrics at http:\/\/127\.0\.0\.1:9464\/metrics/);
        await fn({ server, client, agent, file });
        assert.equal(await agent.stop(), 0, agent.log);
      } finally {
        await agent.dispose();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("metrics: per-rule counters equal the packets sent; reloads and attachments move; promtool accepts it", async () => {
  await withAgent(async ({ server, client, agent, file }) => {
    const first = await scrape(server);
    assert.equal(valueOf(first.samples, "tinyfw_rule_packets_total", rule("discard", "deny")), 0);
    const attachments = first.samples.filter((s) => s.name === "tinyfw_attachments");
    assert.deepEqual(
      attachments.filter((s) => s.value).map((s) => [s.labels.kind, s.value]),
      [["interface", 1]],
      "one interface attached",
    );
    assert.equal(valueOf(first.samples, "tinyfw_ready"), 1);
    assert.equal(valueOf(first.samples, "tinyfw_policy_reloads_total", { result: "success" }), 0);
    // The load at start counts as the last one.
    assert.equal(valueOf(first.samples, "tinyfw_policy_last_reload_success"), 1);
    const startLoad = valueOf(first.samples, "tinyfw_policy_last_reload_timestamp_seconds")!;
    assert.ok(Math.abs(startLoad - Date.now() / 1000) < 60, `load at ${startLoad}`);
    assert.equal(valueOf(first.samples, "tinyfw_build_info"), 1);
    assert.equal(valueOf(first.samples, "tinyfw_containerd_connected"), undefined, "no --cmode");

    // Known traffic: a flood to the denied port, and 5 + 3 datagrams to the allowed one.
    const flood = await startFlood(client, SERVER4, 9);
    await new Promise((r) => setTimeout(r, 500));
    const { sent, received } = await flood.stop();
    assert.equal(received, 0n);
    for (let i = 0; i < 5; i++) assert.ok(await reach(client, "udp", SERVER4, 5353));
    for (let i = 0; i < 3; i++) assert.ok(await reach(client, "udp", SERVER6, 5353));
    const counted = await scrape(server);
    const discard = rule("discard", "deny");
    assert.equal(valueOf(counted.samples, "tinyfw_rule_packets_total", discard), Number(sent));
    // 64 bytes of payload + UDP 8 + IPv4 20 + Ethernet 14.
    assert.equal(valueOf(counted.samples, "tinyfw_rule_bytes_total", discard), Number(sent) * 106);
    assert.equal(valueOf(counted.samples, "tinyfw_rule_packets_total", rule("echo", "allow")), 8);
    assert.equal(
      valueOf(counted.samples, "tinyfw_rule_packets_total", rule("discard", "deny", "egress")),
      0,
    );
    const lint = await promtoolCheck(counted.text);
    assert.equal(lint.code, 0, lint.output);
    assert.equal(lint.output.trim(), "", `promtool: ${lint.output}`);

    // A reload that takes effect, then one refused.
    await Deno.writeTextFile(file, POLICY.replace("name: echo", "name: echo-v2"));
    agent.signal("SIGHUP");
    await agent.waitFor(/policy reloaded \(SIGHUP\)/);
    const reloaded = await scrape(server);
    assert.equal(
      valueOf(reloaded.samples, "tinyfw_policy_reloads_total", { result: "success" }),
      1,
    );
    assert.equal(valueOf(reloaded.samples, "tinyfw_policy_last_reload_success"), 1);
    assert.ok(valueOf(reloaded.samples, "tinyfw_policy_last_reload_duration_seconds")! > 0);
    assert.ok(
      valueOf(reloaded.samples, "tinyfw_policy_last_reload_timestamp_seconds")! > startLoad,
    );
    // The counts of the policy in force before the reload carry on.
    assert.equal(valueOf(reloaded.samples, "tinyfw_rule_packets_total", discard), Number(sent));
    assert.equal(valueOf(reloaded.samples, "tinyfw_rule_packets_total", rule("echo", "allow")), 8);
    assert.equal(
      valueOf(reloaded.samples, "tinyfw_rule_packets_total", rule("echo-v2", "allow")),
      0,
    );
    await Deno.writeTextFile(file, "policies: [");
    agent.signal("SIGHUP");
    await agent.waitFor(/policy reload \(SIGHUP\) rejected/);
    const refused = await scrape(server);
    assert.equal(valueOf(refused.samples, "tinyfw_policy_reloads_total", { result: "failure" }), 1);
    assert.equal(valueOf(refused.samples, "tinyfw_policy_reloads_total", { result: "success" }), 1);
    assert.equal(valueOf(refused.samples, "tinyfw_policy_last_reload_success"), 0);

    // Health, readiness, and what else the listener says.
    assert.deepEqual(await httpGet(server, `http://${ADDR}/healthz`), {
      status: 200,
      body: "ok\n",
    });
    assert.deepEqual(await httpGet(server, `http://${ADDR}/readyz`), {
      status: 200,
      body: "ready\n",
    });
    assert.equal((await httpGet(server, `http://${ADDR}/nope`)).status, 404);
  });
});

Deno.test("metrics: a real Prometheus server scrapes the agent; its query API returns the per-rule series", async () => {
  await withAgent(async ({ server, client }) => {
    const prometheus = await startPrometheus(server, ADDR);
    try {
      const flood = await startFlood(client, SERVER4, 9);
      let series: Awaited<ReturnType<typeof prometheus.query>> = [];
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        series = await prometheus.query('tinyfw_rule_packets_total{rule="discard"} > 0');
        if (series.length) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      const { received } = await flood.stop();
      assert.equal(received, 0n);
      assert.equal(series.length, 1, "Prometheus has no discard series with packets");
      const [s] = series;
      assert.equal(s.metric.__name__, "tinyfw_rule_packets_total");
      assert.equal(s.metric.policy, "hosts");
      assert.equal(s.metric.action, "deny");
      assert.equal(s.metric.direction, "ingress");
      assert.equal(s.metric.job, "tinyfw");
      assert.ok(Number(s.value[1]) > 0);
      const all = await prometheus.query("tinyfw_rule_packets_total");
      // Two rules and the default, both directions each.
      assert.equal(all.length, 6, JSON.stringify(all.map((a) => a.metric)));
      const up = await prometheus.query('up{job="tinyfw"}');
      assert.equal(up[0]?.value[1], "1");
      const build = await prometheus.query("tinyfw_build_info");
      assert.equal(build[0]?.value[1], "1");
      // Every query of the Grafana dashboard is one this Prometheus evaluates.
      let evaluated = 0;
      for (const expr of dashboardExpressions()) {
        const promql = asPromql(expr);
        if (promql === null) continue;
        await prometheus.query(promql); // asserts the API's "success"
        evaluated++;
      }
      assert.ok(evaluated >= 15, `only ${evaluated} dashboard queries`);
    } finally {
      await prometheus.stop();
    }
  });
});

Deno.test("metrics: a --metrics-addr already in use is refused in one sentence before anything is attached", async () => {
  await withTopology(async ({ server, iface }) => {
    await startServer(server, { tcp: [9464] }); // takes the port on every address
    const agent = AgentProcess.start(["--iface", iface, "--metrics-addr", ADDR], server);
    try {
      assert.equal(await agent.exitCode(), 1, agent.log);
      assert.match(
        agent.log,
        /Cannot serve metrics at 127\.0\.0\.1:9464: .*choose another --metrics-addr/,
      );
      assert.equal(agent.log.trim().split("\n").length, 1, agent.log);
      assert.equal(xdpOf(server, iface).mode, "none", "something was attached");
    } finally {
      await agent.dispose();
    }
  });
});
