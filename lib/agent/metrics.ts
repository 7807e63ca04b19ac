/**
 * The agent's Prometheus endpoint (`--metrics-addr`, SPEC §5): `/metrics` in
 * the text exposition format 0.0.4 (prom-client), `/healthz` (the process
 * answers) and `/readyz` (every selected attachment in place), on one
 * listener. Counters are read from the kernel at scrape time. The names
 * follow Prometheus' conventions: base units, `_total` only on counters, no
 * label of unbounded values (addresses, container ids). docs/OPERATIONS.md
 * has the reference.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import client from "prom-client";
import type { RuleCounter } from "./counters.ts";
import { layoutId } from "../persist/mod.ts";
import { describeError, VERSION } from "../base/mod.ts";
import type { HostPort } from "../net/mod.ts";

/** What the metrics are read from: the running agent (lib/agent/agent.ts). */
export interface MetricsSource {
  /** Per-rule counts, read from the kernel now. */
  counters(): RuleCounter[];
  /** Packets no rule decided, by outcome. */
  outcomes(): Record<string, bigint>;
  samplesLost(): bigint;
  attachments(): readonly { kind: "interface" | "container" | "veth"; mode: string }[];
  readonly reloads: {
    readonly ok: number;
    readonly failed: number;
    readonly last?: { readonly ok: boolean; readonly seconds: number; readonly at: number };
  };
  ready(): boolean;
  /** Containers mode, when on. */
  readonly containers?: { readonly connected: boolean };
  /** Called with each container's event-to-filtered latency (set by the registry). */
  onContainerLatency?: (l: { readonly sincePublishedMs: number }) => void;
}

/** Event-to-filtered buckets, in seconds (the target is a p99 under 0.05 s). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5];

/** Every metric of the agent, in one registry. */
export function agentRegistry(agent: MetricsSource): client.Registry {
  const registry = new client.Registry();
  const registers = [registry];
  const ruleLabels = ["policy", "rule", "action", "direction"] as const;
  const ruleLabel = (c: RuleCounter) => ({
    policy: c.policy,
    rule: c.rule ?? "(default)",
    action: c.action,
    direction: c.direction,
  });

  new client.Counter({
    name: "tinyfw_rule_packets_total",
    help: "Packets decided by each rule (or a policy's default action), per direction.",
    labelNames: ruleLabels,
    registers,
    collect() {
      this.reset();
      for (const c of agent.counters()) this.inc(ruleLabel(c), Number(c.packets));
    },
  });
  new client.Counter({
    name: "tinyfw_rule_bytes_total",
    help:
      "Bytes (whole frames) decided by each rule (or a policy's default action), per direction.",
    labelNames: ruleLabels,
    registers,
    collect() {
      this.reset();
      for (const c of agent.counters()) this.inc(ruleLabel(c), Number(c.bytes));
    },
  });
  new client.Counter({
    name: "tinyfw_packets_total",
    help: "Packets not decided by a rule, by outcome: non_ip and neighbour_discovery passed, " +
      "malformed dropped, reply and audit_pass passed though denied, unconfigured passed.",
    labelNames: ["outcome"],
    registers,
    collect() {
      this.reset();
      for (const [outcome, n] of Object.entries(agent.outcomes())) this.inc({ outcome }, Number(n));
    },
  });
  new client.Counter({
    name: "tinyfw_drop_samples_lost_total",
    help: "Drop samples not sent to the log (over 20 a second per CPU, or the ring buffer full).",
    registers,
    collect() {
      this.reset();
      this.inc(Number(agent.samplesLost()));
    },
  });
  new client.Gauge({
    name: "tinyfw_attachments",
    help: "XDP attachments, by kind (interface, container side, unclaimed veth) and mode.",
    labelNames: ["kind", "mode"],
    registers,
    collect() {
      this.reset();
      for (const kind of ["interface", "container", "veth"]) {
        for (const mode of ["native", "generic"]) this.set({ kind, mode }, 0);
      }
      for (const a of agent.attachments()) this.inc({ kind: a.kind, mode: a.mode });
    },
  });
  new client.Counter({
    name: "tinyfw_policy_reloads_total",
    help: "Policy reloads by result: success (in force) or failure (the policy in force stayed).",
    labelNames: ["result"],
    registers,
    collect() {
      this.reset();
      this.inc({ result: "success" }, agent.reloads.ok);
      this.inc({ result: "failure" }, agent.reloads.failed);
    },
  });
  new client.Gauge({
    name: "tinyfw_policy_last_reload_success",
    help: "1 if the last policy load (at start, or a reload) took effect, 0 if it was refused.",
    registers,
    collect() {
      this.reset();
      const last = agent.reloads.last;
      if (last) this.set(last.ok ? 1 : 0);
    },
  });
  new client.Gauge({
    name: "tinyfw_policy_last_reload_duration_seconds",
    help: "How long the last policy load took: read, validate, compile, install and switch.",
    registers,
    collect() {
      this.reset();
      const last = agent.reloads.last;
      if (last) this.set(last.seconds);
    },
  });
  new client.Gauge({
    name: "tinyfw_policy_last_reload_timestamp_seconds",
    help: "When the last policy load ended (Unix time).",
    registers,
    collect() {
      this.reset();
      const last = agent.reloads.last;
      if (last) this.set(last.at);
    },
  });
  if (agent.containers) {
    const containers = agent.containers;
    new client.Gauge({
      name: "tinyfw_containerd_connected",
      help: "1 while the containerd event stream is up (containers mode).",
      registers,
      collect() {
        this.set(containers.connected ? 1 : 0);
      },
    });
    const latency = new client.Histogram({
      name: "tinyfw_container_attach_latency_seconds",
      help: "Time from a container's containerd event to its veth filtered (containers mode).",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    agent.onContainerLatency = (l) => latency.observe(l.sincePublishedMs / 1000);
  }
  new client.Gauge({
    name: "tinyfw_ready",
    help: "1 when every selected attachment is in place (what /readyz answers).",
    registers,
    collect() {
      this.set(agent.ready() ? 1 : 0);
    },
  });
  const build = new client.Gauge({
    name: "tinyfw_build_info",
    help: "Always 1: the version of tinyfw and of its map layout.",
    labelNames: ["version", "layout", "deno"],
    registers,
  });
  build.set({ version: VERSION, layout: layoutId(), deno: Deno.version.deno }, 1);
  new client.Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory of the agent's process.",
    registers,
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
  const startTime = Date.now() / 1000 - performance.now() / 1000;
  new client.Gauge({
    name: "process_start_time_seconds",
    help: "When the agent's process started (Unix time).",
    registers,
  }).set(startTime);
  return registry;
}

/** The running endpoint. */
export interface MetricsServer {
  /** Where it listens (the port chosen when 0 was given). */
  readonly addr: HostPort;
  /** Starts answering `/metrics` and `/readyz` from `source` (until then: 503). */
  serve(source: MetricsSource): void;
  close(): Promise<void>;
}

/**
 * Listens at `addr` for `/metrics`, `/healthz` and `/readyz`. It is bound
 * before the agent starts (so a taken port changes nothing) and answers
 * `/healthz` at once; `/metrics` and `/readyz` say 503 until {@link
 * MetricsServer.serve} gives it the started agent.
 */
export function listenMetrics(addr: HostPort, log: Logger): Promise<MetricsServer> {
  let source: MetricsSource | null = null;
  let registry: client.Registry | null = null;
  const handle = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { Allow: "GET" } });
    }
    if (path === "/healthz") return new Response("ok\n");
    if (path !== "/metrics" && path !== "/readyz") {
      return new Response("not found: try /metrics, /healthz or /readyz\n", { status: 404 });
    }
    if (!source || !registry) {
      return new Response("not ready: the agent is starting\n", { status: 503 });
    }
    if (path === "/metrics") {
      return new Response(await registry.metrics(), {
        headers: { "Content-Type": registry.contentType },
      });
    }
    return source.ready()
      ? new Response("ready\n")
      : new Response("not ready: attachments are still being made\n", { status: 503 });
  };
  return new Promise((resolve, reject) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: addr.hostname,
        port: addr.port,
        onListen: (a) => {
          log.info("serving metrics at http://{addr}/metrics", {
            addr: `${a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname}:${a.port}`,
          });
          resolve({
            addr: { hostname: a.hostname, port: a.port },
            serve(s) {
              registry = agentRegistry(s);
              source = s;
            },
            close: () => server.shutdown(),
          });
        },
        onError: (e) => {
          log.warn("metrics request failed: {error}", { error: describeError(e) });
          return new Response("internal error\n", { status: 500 });
        },
      }, handle);
    } catch (e) {
      reject(e);
    }
  });
}
