/**
 * The agent as a user starts it (`deno task start ARGS`, i.e. `deno run
 * --allow-all main.ts ARGS`), optionally inside a test's network namespace,
 * with its log captured so tests can wait for lines and show it on failure.
 *
 * Unless the test gives one, each agent gets a pin path of its namespace's
 * own (`/sys/fs/bpf/tinyfw-test-NAME`), so that agents restarted in one test
 * adopt each other's pins while tests never share any; {@link dispose} kills
 * the agent and detaches whatever it left there.
 */
import type { Netns } from "./netns.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A running agent process. */
export class AgentProcess {
  readonly child: Deno.ChildProcess;
  /** The agent's `--pin-path`. */
  readonly pinPath: string;
  readonly #ns?: Netns;
  /** Everything it wrote to stderr so far. */
  log = "";
  readonly #exited: Promise<Deno.CommandStatus>;
  #waiters: { re: RegExp; resolve: () => void }[] = [];

  private constructor(child: Deno.ChildProcess, pinPath: string, ns?: Netns) {
    this.child = child;
    this.pinPath = pinPath;
    this.#ns = ns;
    this.#exited = child.status;
    this.#pump(child.stderr);
    child.stdout.pipeTo(new WritableStream({ write: (c) => this.#append(c) })).catch(() => {});
  }

  /** Starts `main.ts ARGS` (inside `ns` when given). */
  static start(args: readonly string[], ns?: Netns): AgentProcess {
    const given = args.indexOf("--pin-path");
    const pinPath = given >= 0 ? args[given + 1] : testPinPath(ns);
    // As `deno task start` runs it (deno.json): a small young generation keeps RSS down.
    const argv = [
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      "--v8-flags=--max-semi-space-size=1",
      `${ROOT}main.ts`,
      ...args,
      ...(given >= 0 ? [] : ["--pin-path", pinPath]),
    ];
    const cmd = ns ? ["nsenter", `--net=${ns.path}`, ...argv] : argv;
    const child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    return new AgentProcess(child, pinPath, ns);
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of stream) this.#append(chunk);
    } catch {
      // the process went away
    }
  }

  #append(chunk: Uint8Array): void {
    this.log += new TextDecoder().decode(chunk);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.re.test(this.log)) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves when the log matches `re`; rejects on exit or after `timeoutMs`. */
  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<void> {
    if (re.test(this.log)) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        new Promise<void>((resolve) => this.#waiters.push({ re, resolve })),
        this.#exited.then((s) => {
          throw new Error(`agent exited (${s.code}) before logging ${re}:\n${this.log}`);
        }),
        new Promise<void>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`agent did not log ${re} in ${timeoutMs} ms:\n${this.log}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** How many times the log matches `re` (give it the `g` flag). */
  count(re: RegExp): number {
    return [...this.log.matchAll(re)].length;
  }

  /** Resolves when the log matches `re` (with the `g` flag) at least `n` times. */
  async waitForCount(re: RegExp, n: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.count(re) < n) {
      if (Date.now() > deadline) {
        throw new Error(`agent logged ${re} ${this.count(re)} times, not ${n}:\n${this.log}`);
      }
      const status = await Promise.race([
        this.#exited,
        new Promise<null>((r) => setTimeout(() => r(null), 10)),
      ]);
      if (status) throw new Error(`agent exited (${status.code}):\n${this.log}`);
    }
  }

  /** Sends `signal` without waiting. */
  signal(signal: Deno.Signal): void {
    this.child.kill(signal);
  }

  /** Sends `signal` and waits for the exit code. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<number> {
    try {
      this.child.kill(signal);
    } catch {
      // already exited
    }
    return (await this.#exited).code;
  }

  /**
   * Kills the agent (if it still runs) and detaches everything left under its
   * pin path: the test's own clean-up, for `finally`.
   */
  async dispose(): Promise<void> {
    await this.stop("SIGKILL");
    await detachPins(this.pinPath, this.#ns);
  }

  /** The exit code, once it exits by itself. */
  async exitCode(): Promise<number> {
    return (await this.#exited).code;
  }
}

/** The pin path of a test's agents in `ns` (or, without one, of this test process). */
export function testPinPath(ns?: Netns): string {
  return `/sys/fs/bpf/tinyfw-test-${ns?.name ?? `host-${Deno.pid}`}`;
}

/** What a `tinyfw` subcommand printed, and its exit code. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `main.ts ARGS` to its end (inside `ns` when given), as `deno task start ARGS` would. */
export async function tinyfw(args: readonly string[], ns?: Netns): Promise<CommandResult> {
  const argv = [Deno.execPath(), "run", "--allow-all", "--quiet", `${ROOT}main.ts`, ...args];
  const cmd = ns ? ["nsenter", `--net=${ns.path}`, ...argv] : argv;
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** `tinyfw detach --pin-path P` (in `ns`): removes whatever an agent left there. */
export async function detachPins(pinPath: string, ns?: Netns): Promise<void> {
  const r = await tinyfw(["detach", "--pin-path", pinPath], ns);
  if (r.code !== 0) throw new Error(`detach of ${pinPath} failed: ${r.stderr}${r.stdout}`);
}

/**
 * The packets an agent run with `--log-format json` reported at exit for
 * `policy`/`rule` (both directions).
 */
export function countedAtExit(log: string, policy: string, rule: string): bigint {
  let counted = 0n;
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    const rec = JSON.parse(line);
    if (rec.policy === policy && rec.rule === rule && rec.packets !== undefined) {
      counted += BigInt(rec.packets);
    }
  }
  return counted;
}
