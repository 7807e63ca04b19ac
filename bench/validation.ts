/**
 * Validation's time and memory on the worst cases we know
 * (tests/helpers/worst_cases.ts), every one under the size cap: the bound of
 * docs/POLICY.md ("Limits"), measured. Each file is loaded (read, parsed,
 * validated, compiled: what `tinyfw check`, start and reload do) in a child
 * process of its own, with the agent's V8 flags, which reports the load's
 * wall time and its peak RSS (VmHWM).
 *
 *   deno task bench:validation          # a table; bench/out/validation.json
 *   deno task bench:validation NAME...  # only these cases
 */
import { WORST_CASES } from "../tests/helpers/worst_cases.ts";

const ROOT = new URL("../", import.meta.url).pathname;

interface Measured {
  name: string;
  about: string;
  bytes: number;
  ok: boolean;
  /** The first error, when refused. */
  error?: string;
  ms: number;
  peakMiB: number;
}

/** In the child: loads one file and prints what it measured. */
async function child(path: string): Promise<void> {
  const { loadPolicyFile } = await import("../lib/policy/load.ts");
  const t = performance.now();
  const r = loadPolicyFile(path);
  const ms = performance.now() - t;
  const status = Deno.readTextFileSync("/proc/self/status");
  const peakKiB = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  console.log(JSON.stringify({
    ok: r.ok,
    error: r.ok ? undefined : r.errors[0].message,
    ms,
    peakMiB: peakKiB / 1024,
  }));
}

async function main(names: string[]): Promise<void> {
  const cases = names.length ? WORST_CASES.filter((c) => names.includes(c.name)) : WORST_CASES;
  const dir = await Deno.makeTempDir({ prefix: "tinyfw-bench-validation-" });
  const results: Measured[] = [];
  try {
    for (const c of cases) {
      const path = `${dir}/${c.name}.yaml`;
      const text = c.text();
      await Deno.writeTextFile(path, text);
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          "--quiet",
          "--v8-flags=--max-semi-space-size=1",
          `${ROOT}bench/validation.ts`,
          "--child",
          path,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      await Deno.remove(path);
      const m = JSON.parse(new TextDecoder().decode(out.stdout));
      results.push({ name: c.name, about: c.about, bytes: text.length, ...m });
      const verdict = m.ok ? "valid" : `refused: ${String(m.error).slice(0, 90)}`;
      console.log(
        `${c.name.padEnd(26)} ${(text.length / 1e6).toFixed(1).padStart(5)} MB ` +
          `${m.ms.toFixed(0).padStart(6)} ms ${m.peakMiB.toFixed(0).padStart(5)} MiB  ${verdict}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await Deno.mkdir(`${ROOT}bench/out`, { recursive: true });
  await Deno.writeTextFile(
    `${ROOT}bench/out/validation.json`,
    JSON.stringify({ when: new Date().toISOString(), results }, null, 2) + "\n",
  );
}

if (import.meta.main) {
  if (Deno.args[0] === "--child") await child(Deno.args[1]);
  else await main(Deno.args);
}
