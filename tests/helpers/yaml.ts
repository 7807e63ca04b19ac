/** A positioned YAML tree as plain JavaScript, whole (for comparing with js-yaml's `load`). */
import type { YNode } from "../../lib/policy/yaml/parse.ts";

export function treeAsJs(n: YNode | null): unknown {
  if (n === null) return null;
  if (n.kind === "scalar") return n.value;
  if (n.kind === "seq") return n.items.map(treeAsJs);
  const out: Record<string, unknown> = {};
  for (const e of n.entries) out[String(e.key)] = treeAsJs(e.value);
  return out;
}
