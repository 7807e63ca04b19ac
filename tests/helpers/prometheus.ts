/**
 * Prometheus for the metrics tests: HTTP GETs from inside a test's network
 * namespace, a parser of the text exposition format, `promtool check
 * metrics`, and a real Prometheus server scraping an agent on the
 * namespace's loopback. `scripts/setup.sh` unpacks Debian's prometheus and
 * promtool binaries into {@link TOOLS_DIR}.
 */
import assert from "node:assert/strict";
import type { Netns } from "./netns.ts";
import { NETPEER } from "./topology.ts";

export const TOOLS_DIR = "/usr/local/lib/tinyfw-test-tools";

/** An HTTP answer. */
export interface HttpAnswer {
  status: number;
  body: string;
}

/** GETs `url` from inside `ns`. */
export async function httpGet(ns: Netns, url: string): Promise<HttpAnswer> {
  const r = await ns.exec([Deno.execPath(), "run", "--allow-all", "--quiet", NETPEER, "get", url]);
  const nl = r.stdout.indexOf("\n");
  return { status: Number(r.stdout.slice(0, nl)), body: r.stdout.slice(nl + 1) };
}

/** One sample of an exposition: name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a text exposition (comments skipped). */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample named `name` whose labels include `labels` (undefined: none). */
export function valueOf(
  samples: readonly Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const found = samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  assert.ok(found.length <= 1, `${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/** `promtool check metrics` on `text`: its exit code and what it said. */
export async function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command(`${TOOLS_DIR}/promtool`, {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, output: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** A Prometheus server started by a test. */
export interface PrometheusServer {
  /** Its HTTP API base, e.g. http://127.0.0.1:9090 (on the namespace's loopback). */
  readonly url: string;
  /** An instant query: the API's `data.result`. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  /** Stops it and removes its data. */
  stop(): Promise<void>;
}

/**
 * Starts Prometheus inside `ns`, listening on 127.0.0.1:`port`, scraping
 * `target` (HOST:PORT) every second, and waits until it is ready.
 */
export async function startPrometheus(
  ns: Netns,
  target: string,
  port = 9090,
): Promise<PrometheusServer> {
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-prometheus-" });
  await Deno.writeTextFile(
    `${dir}/prometheus.yml`,
    `global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tinyfw
    static_configs:
      - targets: ["${target}"]
`,
  );
  const proc = await ns.spawn([
    `${TOOLS_DIR}/prometheus`,
    `--config.file=${dir}/prometheus.yml`,
    `--storage.tsdb.path=${dir}/data`,
    `--web.listen-address=127.0.0.1:${port}`,
    "--log.level=warn",
  ]);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await proc.kill();
    await Deno.remove(dir, { recursive: true });
  };
  try {
    const deadline = Date.now() + 30_000;
    while ((await httpGet(ns, `${url}/-/ready`).catch(() => null))?.status !== 200) {
      if (Date.now() > deadline) throw new Error("Prometheus did not become ready in 30 s");
      await new Promise((r) => setTimeout(r, 200));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    url,
    async query(expr) {
      const r = await httpGet(ns, `${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      assert.equal(r.status, 200, r.body);
      const j = JSON.parse(r.body);
      assert.equal(j.status, "success", r.body);
      return j.data.result;
    },
    stop,
  };
}
