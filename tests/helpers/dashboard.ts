/** The PromQL expressions of deploy/grafana/tinyfw-dashboard.json. */

const FILE = new URL("../../deploy/grafana/tinyfw-dashboard.json", import.meta.url).pathname;

/** Every query of the dashboard: panels' targets, variables' definitions, annotations. */
export function dashboardExpressions(): string[] {
  const exprs: string[] = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") {
      for (const [k, v] of Object.entries(node)) {
        if ((k === "expr" || k === "definition") && typeof v === "string") exprs.push(v);
        else walk(v);
      }
    }
  };
  walk(JSON.parse(Deno.readTextFileSync(FILE)));
  return exprs;
}

/**
 * A panel's expression as Grafana sends it to Prometheus: its variables
 * replaced (every job and node, a 1-minute rate window). Variable queries
 * (`label_values(...)`) are Grafana's, not PromQL: null.
 */
export function asPromql(expr: string): string | null {
  if (expr.startsWith("label_values(")) return null;
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$instance", ".*")
    .replaceAll("$job", ".*");
}
