/**
 * Whether the containerd client and watcher really let go of everything.
 * Deno's test sanitizers miss what grpc-js keeps (a leaked, never-closed
 * client passes them), so cleanup is checked the definitive way: a child
 * process uses the client or watcher, stops it, prints "stopped", and must
 * then exit by itself, which it cannot while a socket, a stream or a
 * referenced timer is left.
 *
 * Modes: "client" (subscribe, list, close), "watcher" (start, snapshot,
 * stop), "watcher-absent" (three failed attempts, stop), "leak" (a client
 * never closed: the check's own check).
 *
 * @module
 */

const LIB = new URL("../../lib/containerd/mod.ts", import.meta.url).href;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

const CHILD = `
import { ContainerdClient, ContainerdWatcher } from "${LIB}";
const [socket, mode] = Deno.args;
const states = [];
let snapshotSeen;
const snapshot = new Promise((r) => snapshotSeen = r);
const watcher = (backoff) => new ContainerdWatcher({ socket, backoff }, {
  onSnapshot: () => snapshotSeen(),
  onEvent() {},
  onState: (s) => states.push(s),
});
if (mode === "watcher") {
  const w = watcher({ initialMs: 10, maxMs: 20 });
  w.start();
  await snapshot;
  await w.stop();
} else if (mode === "watcher-absent") {
  const w = watcher({ initialMs: 10, maxMs: 20 });
  w.start();
  while (states.filter((s) => s === "disconnected").length < 3) await new Promise((r) => setTimeout(r, 5));
  await w.stop();
} else if (mode === "client" || mode === "leak") {
  const c = ContainerdClient.connect(socket);
  const s = c.subscribe({}, () => {});
  await c.namespaces();
  await c.listTasks("default");
  if (mode === "client") {
    c.close();
    await s.closed;
  }
}
console.log("stopped");
`;

/**
 * Runs the child in `mode` against `socket`: true if it exited by itself
 * within `graceMs` of printing "stopped".
 */
export async function exitsAfterStop(socket: string, mode: string, graceMs = 1500) {
  const dir = await Deno.makeTempDir({ prefix: "tfw-exitcheck-" });
  try {
    const script = `${dir}/child.ts`;
    await Deno.writeTextFile(script, CHILD);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--no-check",
        "--quiet",
        "--config",
        CONFIG,
        script,
        socket,
        mode,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = (ms: number) =>
      new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
    try {
      // Up to 20 s for the child to start and do its work.
      const deadline = Date.now() + 20_000;
      while (!out.includes("stopped\n")) {
        const r = await Promise.race([reader.read(), timeout(deadline - Date.now())]);
        clearTimeout(timer);
        if (r === "timeout") throw new Error(`child (${mode}) did not finish its work: ${out}`);
        if (r.done) break;
        out += r.value;
      }
      const rest = (async () => {
        while (!(await reader.read()).done);
      })();
      const exited = await Promise.race([child.status.then(() => true), timeout(graceMs)]);
      clearTimeout(timer);
      if (exited !== true) child.kill("SIGKILL");
      await rest;
      const status = await child.status;
      if (exited === true && !status.success) throw new Error(`child (${mode}) failed: ${out}`);
      return exited === true;
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
