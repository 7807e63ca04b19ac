/**
 * Network namespaces and veth pairs for tests (run as root). Names are a
 * prefix (`tfwt` by default) plus a random suffix so parallel runs do not
 * collide; callers remove what they made in `finally` ({@link Netns.delete},
 * {@link VethPair.delete}) or let {@link withNetns} do it.
 *
 * Commands run inside a namespace with `nsenter --net=/run/netns/NAME`, not
 * `ip netns exec` (which remounts /sys and hides /sys/fs/bpf).
 *
 * @module
 */

import { ifNameToIndex, inNetns } from "../../lib/ffi/libc.ts";

/** A unique name: `prefix` + 6 hex digits (room left for a suffix in an interface name). */
export function uniqueName(prefix = "tfwt"): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The outcome of {@link run}. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Run inside this namespace (nsenter). */
  ns?: Netns;
  /** Return a non-zero exit instead of throwing. */
  allowFailure?: boolean;
}

/** Runs a command; throws with its stderr when it exits non-zero (unless `allowFailure`). */
export async function run(cmd: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const argv = opts.ns ? ["nsenter", `--net=${opts.ns.path}`, ...cmd] : [...cmd];
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const result = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if (!opts.allowFailure && out.code !== 0) {
    throw new Error(`${argv.join(" ")} exited ${out.code}: ${result.stderr.trim()}`);
  }
  return result;
}

/** A process started in a namespace by {@link nsSpawn}. */
export interface NsProcess {
  readonly pid: number;
  readonly child: Deno.ChildProcess;
  /** SIGKILLs it and waits for it to exit. */
  kill(): Promise<void>;
}

/** A network namespace made for a test (/run/netns/NAME). */
export class Netns {
  /** The namespace's name, as `ip netns` knows it. */
  readonly name: string;
  readonly #children = new Set<NsProcess>();

  private constructor(name: string) {
    this.name = name;
  }

  /** Creates a namespace named `prefix` + random suffix, with `lo` up. */
  static async create(prefix = "tfwt"): Promise<Netns> {
    const name = uniqueName(prefix);
    await run(["ip", "netns", "add", name]);
    const ns = new Netns(name);
    try {
      await ns.ip("link", "set", "lo", "up");
    } catch (e) {
      await ns.delete();
      throw e;
    }
    return ns;
  }

  /** The namespace's bind mount, for nsenter/setns. */
  get path(): string {
    return `/run/netns/${this.name}`;
  }

  /** Runs a command inside the namespace (throws on a non-zero exit). */
  exec(cmd: readonly string[], opts: { allowFailure?: boolean } = {}): Promise<RunResult> {
    return run(cmd, { ...opts, ns: this });
  }

  /** `ip -n NAME ARGS...`; returns stdout. */
  async ip(...args: string[]): Promise<string> {
    return (await run(["ip", "-n", this.name, ...args])).stdout;
  }

  /**
   * Starts a command inside the namespace (stdout piped, stderr inherited) and
   * resolves once the process is in the namespace. {@link delete} kills it.
   */
  async spawn(cmd: readonly string[]): Promise<NsProcess> {
    const child = new Deno.Command("nsenter", {
      args: [`--net=${this.path}`, ...cmd],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const children = this.#children;
    const proc: NsProcess = {
      pid: child.pid,
      child,
      async kill() {
        children.delete(proc);
        try {
          child.kill("SIGKILL");
        } catch {
          // already exited
        }
        await child.status;
        await child.stdout.cancel().catch(() => {});
      },
    };
    children.add(proc);
    // nsenter setns()es, then execs the command under the same pid.
    const want = Deno.statSync(this.path).ino;
    for (let i = 0; i < 500; i++) {
      try {
        if (Deno.statSync(`/proc/${child.pid}/ns/net`).ino === want) return proc;
      } catch {
        break; // exited
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    await proc.kill();
    throw new Error(`${cmd.join(" ")} did not start in namespace ${this.name}`);
  }

  /**
   * Runs `fn` synchronously with the JS thread inside the namespace (libc
   * setns): sockets made and libbpf calls done in `fn` act there.
   */
  enter<T>(fn: () => T): T {
    return inNetns(this.path, fn);
  }

  /** The ifindex of `ifname` inside the namespace. */
  ifindex(ifname: string): number {
    return this.enter(() => ifNameToIndex(ifname));
  }

  /** Kills what {@link spawn} started, then deletes the namespace and its interfaces. */
  async delete(): Promise<void> {
    for (const proc of [...this.#children]) await proc.kill();
    await run(["ip", "netns", "del", this.name], { allowFailure: true });
  }
}

/** Creates a namespace (see {@link Netns.create}). */
export function createNetns(prefix = "tfwt"): Promise<Netns> {
  return Netns.create(prefix);
}

/** Runs `cmd` inside `ns`. */
export function nsExec(
  ns: Netns,
  cmd: readonly string[],
  opts: { allowFailure?: boolean } = {},
): Promise<RunResult> {
  return ns.exec(cmd, opts);
}

/** Starts `cmd` inside `ns` (see {@link Netns.spawn}). */
export function nsSpawn(ns: Netns, cmd: readonly string[]): Promise<NsProcess> {
  return ns.spawn(cmd);
}

/** Options of {@link createVethPair}. */
export interface VethOptions {
  /** Name prefix (default `tfwt`); the ends are PREFIX+suffix+"h" and +"p". */
  prefix?: string;
  /** Where the host end goes; default: the test's own namespace. */
  hostNetns?: Netns;
  /** Where the peer end goes; default: beside the host end. */
  peerNetns?: Netns;
  /** Addresses with prefix length for the host end, e.g. "10.99.0.1/24", "fd00::1/64". */
  hostAddrs?: string[];
  /** Addresses for the peer end. */
  peerAddrs?: string[];
}

/** A veth pair made by {@link createVethPair}. */
export interface VethPair {
  /** Host end: name, ifindex (in its namespace), namespace (undefined: ours). */
  readonly host: string;
  readonly hostIndex: number;
  readonly hostNetns?: Netns;
  /** Peer end. */
  readonly peer: string;
  readonly peerIndex: number;
  readonly peerNetns?: Netns;
  /** Deletes the pair (no error if it is already gone). */
  delete(): Promise<void>;
}

/**
 * Creates a veth pair, moves the ends into their namespaces, assigns the
 * addresses (IPv6 without duplicate address detection) and sets both ends up.
 */
export async function createVethPair(opts: VethOptions = {}): Promise<VethPair> {
  const base = uniqueName(opts.prefix);
  const host = `${base}h`;
  const peer = `${base}p`;
  const hostRun = (args: string[]) =>
    run(opts.hostNetns ? ["ip", "-n", opts.hostNetns.name, ...args] : ["ip", ...args]);
  const peerTarget = opts.peerNetns ? ["netns", opts.peerNetns.name] : [];
  await hostRun(["link", "add", host, "type", "veth", "peer", "name", peer, ...peerTarget]);
  const remove = async () => {
    await run(
      opts.hostNetns
        ? ["ip", "-n", opts.hostNetns.name, "link", "del", host]
        : ["ip", "link", "del", host],
      { allowFailure: true },
    );
  };
  try {
    const setUp = async (name: string, ns: Netns | undefined, addrs: string[]) => {
      const ip = (args: string[]) => run(ns ? ["ip", "-n", ns.name, ...args] : ["ip", ...args]);
      for (const addr of addrs) {
        await ip(["addr", "add", addr, "dev", name, ...(addr.includes(":") ? ["nodad"] : [])]);
      }
      await ip(["link", "set", name, "up"]);
      return ns ? ns.ifindex(name) : ifNameToIndex(name);
    };
    const hostIndex = await setUp(host, opts.hostNetns, opts.hostAddrs ?? []);
    const peerIndex = await setUp(peer, opts.peerNetns ?? opts.hostNetns, opts.peerAddrs ?? []);
    return {
      host,
      hostIndex,
      hostNetns: opts.hostNetns,
      peer,
      peerIndex,
      peerNetns: opts.peerNetns ?? opts.hostNetns,
      delete: remove,
    };
  } catch (e) {
    await remove();
    throw e;
  }
}

/**
 * Creates `count` namespaces, runs `fn` with them, and deletes them all
 * afterwards (with their interfaces and spawned processes), even if `fn` throws.
 */
export async function withNetns<T>(
  count: number,
  fn: (...ns: Netns[]) => Promise<T> | T,
): Promise<T> {
  const all: Netns[] = [];
  try {
    for (let i = 0; i < count; i++) all.push(await Netns.create());
    return await fn(...all);
  } finally {
    for (const ns of all) await ns.delete();
  }
}
