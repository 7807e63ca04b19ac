/**
 * A private containerd for tests that run real containers (run as root).
 *
 * {@link PrivateContainerd.start} starts `/usr/bin/containerd` on its own temp
 * dir (`root/`, `state/`, `containerd.sock`, `config.toml`, `containerd.log`),
 * so it never touches a system containerd's state; containers run busybox from
 * one read-only root filesystem built in that dir; {@link PrivateContainerd.stop}
 * removes every task and container, stops containerd and deletes the dir.
 *
 * What was checked on this platform (Debian 12, containerd 1.6.20, runc 1.1.5,
 * kernel 6.x, cgroup v1 controllers on a tmpfs /sys/fs/cgroup plus a v2
 * "unified" hierarchy):
 *
 * - runc works through `io.containerd.runc.v2` with the cgroupfs driver and no
 *   extra settings: no `systemd_cgroup`, no `--cgroup ""`. The task lands in
 *   `/NAMESPACE/ID` of every v1 hierarchy and of the unified one (ctr's default
 *   cgroups path); runc removes that cgroup when the task is deleted (the empty
 *   `/sys/fs/cgroup/CTRL/NAMESPACE` parents stay, as with any containerd).
 * - `ctr run` without an image needs `--rootfs` (a flag, the directory is the
 *   first positional argument) and `--env PATH=...` (no image config, so no
 *   PATH, and `sh` is "not found" otherwise). One shared read-only rootfs works
 *   for any number of containers: runc bind-mounts it inside each container's
 *   mount namespace and remounts that read-only; `/tmp` is a per-container
 *   tmpfs (`--mount type=tmpfs,...`). runc needs every mount point (/proc, /dev,
 *   /sys, /run, /etc/hosts and /etc/resolv.conf for `--net-host`) to exist in
 *   the rootfs, since it cannot create them on a read-only one.
 * - Without `--with-ns network:PATH` ctr gives the container a new, empty
 *   network namespace; "host network" needs `--net-host`, used here.
 * - SIGKILL of containerd leaves shims and containers running; a new containerd
 *   on the same root/state/socket reconnects to them (`ctr task ls` shows them
 *   RUNNING with the same pids).
 * - Shims put their sockets under `/run/containerd/s/` (hard-coded in 1.6; the
 *   name hashes our socket address, so no clash with another containerd) and
 *   remove them on exit. `--fifo-dir` keeps exec FIFOs in our dir and
 *   `--log-uri file://` sends a task's stdout/stderr to `logs/ID.log`, so
 *   nothing lands in `/run/containerd/fifo`. The `opt` plugin is pointed at our
 *   dir instead of `/opt/containerd`. runc's state is `/run/containerd/runc/NS/ID`
 *   (removed on delete; the empty NS dir stays). `ctr container create` has no
 *   `--cgroup`/`--runc-root`, so those are left at their defaults everywhere.
 * - Timings here: start (rootfs + boot + first answer) ~140–180 ms, `run`
 *   ~85–110 ms (10 in parallel ~380 ms), `exec` ~60–80 ms, a container's stop
 *   ~60–80 ms, kill ~5 ms, restart ~50–90 ms, stop() ~170–250 ms.
 *
 * busybox 1.35 (Debian's busybox-static) networking inside the containers:
 * - `nc -l -p PORT` serves ONE TCP connection (stdin/stdout are the socket);
 *   `nc -ll -p PORT -e PROG [ARGS]` serves connections forever, running PROG per
 *   connection with the socket as its stdin/stdout, e.g.
 *   `nc -ll -p 8080 -e cat` (echo) or `nc -ll -p 8080 -e echo pong`
 *   (`-e sh -c 'tee -a /tmp/got'` works too). It listens on IPv4 and IPv6.
 *   There is no `-k`.
 * - `nc -w 1 HOST PORT` connects with a 1 s timeout: exit 0 on success; exit 1
 *   with "nc: timed out" after 1 s when nothing answers, and at once with
 *   "Connection refused" / "Network is unreachable". On EOF of stdin it shuts
 *   its sending side, so `echo hi | nc -w 1 HOST 8080` against an echo server
 *   prints "hi" and exits 0. IPv6 addresses work (`nc -w 1 fd00::1 80`).
 * - There is NO UDP support: `nc -u` is "invalid option", and busybox has no
 *   udpsvd/socat. For UDP, run a server in the same network namespace from
 *   the host instead (Netns.spawn with tests/helpers/netpeer.ts): a container
 *   given `netns` shares that namespace.
 * - Also checked: `httpd -f -p PORT -h DIR` (a persistent HTTP server),
 *   `ping -c 1 -W 1 ADDR`, `ping6`, `timeout SEC CMD`, `ip`, `sleep`. busybox
 *   `wget` crashes (SIGSEGV, exit 139) in this static build: use `nc`.
 *
 * Containers' pid 1 is busybox `sh` or the command itself; `sh` as pid 1 ignores
 * SIGTERM, so every stop here uses SIGKILL (`ctr task delete --force`).
 *
 * Deno's test sanitizers: a PrivateContainerd keeps one pending op (the wait on
 * containerd's process) from `start()` until `stop()`, so start and stop it in
 * the same test ({@link withContainerd} does); every helper closes what it opens.
 *
 * @module
 */

import type { RunResult } from "./netns.ts";

export type { RunResult };

const CONTAINERD = "/usr/bin/containerd";
const CTR = "/usr/bin/ctr";
const BUSYBOX = "/usr/bin/busybox";
const SHIM = "containerd-shim-runc-v2";
const READY_TIMEOUT_MS = 15_000;
const CTR_TIMEOUT_MS = 30_000;
/** PATH for containerd and its shims (runc is /usr/sbin/runc). */
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Options of {@link PrivateContainerd.start}. */
export interface ContainerdOptions {
  /**
   * Namespaces whose containers {@link PrivateContainerd.stop} removes besides
   * the ones this harness used. stop() sweeps every namespace containerd lists
   * anyway (the daemon is private, so all of it is ours); this only matters if
   * listing fails.
   */
  namespacesToClean?: string[];
}

/** What {@link PrivateContainerd.run} and {@link PrivateContainerd.create} start. */
export interface RunContainerOptions {
  /** containerd namespace, e.g. "default" or "k8s.io". */
  namespace: string;
  /** Container id; default: unique (`tfwc` + random hex). */
  id?: string;
  /** Container labels (`ctr run --label k=v`). */
  labels?: Record<string, string>;
  /**
   * Path of a network namespace to join (`/run/netns/NAME`, `/proc/PID/ns/net`);
   * absent: the host's network namespace (`--net-host`).
   */
  netns?: string;
  /** Command run in busybox (PATH has /bin), e.g. `["sh", "-c", "nc -ll -p 80 -e cat"]`. */
  cmd: string[];
}

/** A container made by {@link PrivateContainerd.run} or {@link PrivateContainerd.create}. */
export interface ContainerHandle {
  /** Container id. */
  readonly id: string;
  /** containerd namespace. */
  readonly namespace: string;
  /** File with the task's stdout and stderr (`--log-uri file://`). */
  readonly logPath: string;
  /** The task's pid (as `ctr task ls` reports it); throws if there is no task. */
  pid(): Promise<number>;
  /** The task's status ("RUNNING", "STOPPED", ...), or undefined without a task. */
  status(): Promise<string | undefined>;
  /**
   * SIGKILLs the task, waits for it to exit, deletes task and container. No
   * error if they are already gone.
   */
  stop(): Promise<void>;
  /**
   * Runs `cmd` in the container (`ctr task exec --exec-id UNIQUE`), output
   * captured; returns a non-zero exit code instead of throwing.
   */
  exec(cmd: string[]): Promise<RunResult>;
}

/**
 * A container made by {@link PrivateContainerd.create}: the container exists in
 * containerd (event `/containers/create`) but has no task until {@link start}.
 */
export interface CreatedContainer extends ContainerHandle {
  /** Starts the task (`ctr task start -d`); resolves once it runs (`/tasks/start`). */
  start(): Promise<void>;
}

/** A task as `ctr task ls` lists it. */
export interface TaskInfo {
  /** Container id. */
  id: string;
  /** The task's init pid (in our pid namespace). */
  pid: number;
  /** "RUNNING", "STOPPED", "CREATED", "PAUSED"... */
  status: string;
}

/** Options of {@link exec}. */
interface ExecOptions {
  allowFailure?: boolean;
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Runs a command with a timeout (SIGKILL on expiry); throws on non-zero unless allowed. */
async function exec(argv: readonly string[], opts: ExecOptions = {}): Promise<RunResult> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: opts.env,
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
  }, opts.timeoutMs ?? CTR_TIMEOUT_MS);
  let out: Deno.CommandOutput;
  try {
    out = await child.output();
  } finally {
    clearTimeout(timer);
  }
  const result: RunResult = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if (timedOut) {
    throw new Error(`${argv.join(" ")} timed out after ${opts.timeoutMs ?? CTR_TIMEOUT_MS} ms`);
  }
  if (!opts.allowFailure && out.code !== 0) {
    throw new Error(
      `${argv.join(" ")} exited ${out.code}: ${(result.stderr || result.stdout).trim()}`,
    );
  }
  return result;
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether `pid` exists and is not a zombie (zombies count as gone). */
export function isProcessAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** argv of a process, or undefined if it is gone. */
function cmdline(pid: number): string[] | undefined {
  try {
    const raw = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    return raw.split("\0").filter((s, i, a) => s !== "" || i < a.length - 1);
  } catch {
    return undefined;
  }
}

/** The parent pid of `pid`, or undefined if it is gone. */
export function parentPid(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/** A running shim of some containerd, from /proc. */
export interface ShimProcess {
  /** The shim's pid (the parent of the task's init). */
  pid: number;
  /** Its `-namespace` argument. */
  namespace: string;
  /** Its `-id` argument (the container id). */
  id: string;
  /** Its `-address` argument: the socket of the containerd that made it. */
  address: string;
}

/** Every live `containerd-shim-runc-v2` process (any containerd). */
export function listShims(): ShimProcess[] {
  const shims: ShimProcess[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    const argv = cmdline(pid);
    if (!argv || !argv[0]?.endsWith(SHIM) || !isProcessAlive(pid)) continue;
    const arg = (name: string) => {
      const i = argv.indexOf(name);
      return i >= 0 ? argv[i + 1] ?? "" : "";
    };
    shims.push({ pid, namespace: arg("-namespace"), id: arg("-id"), address: arg("-address") });
  }
  return shims;
}

/**
 * Writes the busybox root filesystem: bin/busybox plus one symlink per applet,
 * the mount points runc needs, and minimal /etc files.
 */
async function buildRootfs(rootfs: string): Promise<void> {
  for (const d of ["bin", "proc", "sys", "dev", "tmp", "etc", "run", "root", "var"]) {
    await Deno.mkdir(`${rootfs}/${d}`, { recursive: true });
  }
  await Deno.chmod(`${rootfs}/tmp`, 0o1777);
  await Deno.copyFile(BUSYBOX, `${rootfs}/bin/busybox`);
  await Deno.chmod(`${rootfs}/bin/busybox`, 0o755);
  const list = await exec([BUSYBOX, "--list"]);
  for (const applet of list.stdout.split("\n")) {
    if (!applet || applet === "busybox" || applet.includes("/")) continue;
    await Deno.symlink("busybox", `${rootfs}/bin/${applet}`);
  }
  const files: Record<string, string> = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    "etc/resolv.conf": "",
    "etc/hostname": "tfwc\n",
  };
  for (const [path, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${rootfs}/${path}`, text);
  }
}

function configToml(dir: string): string {
  return `# Private containerd for tinyfw tests (tests/helpers/containerd.ts).
version = 2
root = "${dir}/root"
state = "${dir}/state"
oom_score = 0
# CRI would start its own CNI/streaming machinery; snapshotters that cannot
# work here (aufs, btrfs, zfs, devmapper) only log noise. Containers use
# --rootfs, so no snapshotter is needed at all.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "${dir}/containerd.sock"

[ttrpc]
  address = "${dir}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "${dir}/opt"
`;
}

/**
 * A containerd of our own on a temp dir. Start with {@link PrivateContainerd.start}
 * (or use {@link withContainerd}); always {@link stop} it.
 */
export class PrivateContainerd {
  /** The temp dir: root/, state/, rootfs/, logs/, fifo/, config.toml, containerd.log. */
  readonly dir: string;
  /** Absolute path of containerd's gRPC unix socket. */
  readonly socket: string;
  /** The shared read-only busybox root filesystem. */
  readonly rootfs: string;
  /** containerd's log file. */
  readonly logFile: string;
  #child: Deno.ChildProcess | undefined;
  #exited = true;
  #status: Promise<Deno.CommandStatus> | undefined;
  readonly #created = new Map<string, { namespace: string; id: string }>();
  readonly #namespaces = new Set<string>();
  #stopped = false;

  private constructor(dir: string, opts: ContainerdOptions) {
    this.dir = dir;
    this.socket = `${dir}/containerd.sock`;
    this.rootfs = `${dir}/rootfs`;
    this.logFile = `${dir}/containerd.log`;
    for (const ns of opts.namespacesToClean ?? []) this.#namespaces.add(ns);
  }

  /**
   * Makes the temp dir, config and rootfs, starts containerd and waits until
   * `ctr version` answers (15 s at most; the error carries the log's tail).
   */
  static async start(opts: ContainerdOptions = {}): Promise<PrivateContainerd> {
    const dir = await Deno.makeTempDir({ prefix: "tfwcd-" });
    const c = new PrivateContainerd(dir, opts);
    try {
      for (const d of ["root", "state", "logs", "fifo", "opt"]) await Deno.mkdir(`${dir}/${d}`);
      await Deno.writeTextFile(`${dir}/config.toml`, configToml(dir));
      await buildRootfs(c.rootfs);
      await c.#launch();
      return c;
    } catch (e) {
      await c.#terminate();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw e;
    }
  }

  /** containerd's pid (the current one after {@link restart}). */
  get pid(): number {
    if (!this.#child) throw new Error("containerd was never started");
    return this.#child.pid;
  }

  /** Whether the containerd we started is still running. */
  get running(): boolean {
    return !this.#exited;
  }

  /** Starts the daemon (log appended) and waits until it answers. */
  async #launch(): Promise<void> {
    // sh only redirects into the log and execs: the pid is containerd's.
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'exec "$0" --config "$1" --root "$2" --state "$3" --address "$4" >>"$5" 2>&1',
        CONTAINERD,
        `${this.dir}/config.toml`,
        `${this.dir}/root`,
        `${this.dir}/state`,
        this.socket,
        this.logFile,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      env: { PATH },
    }).spawn();
    this.#child = child;
    this.#exited = false;
    this.#status = child.status.then((s) => {
      if (this.#child === child) this.#exited = true;
      return s;
    });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = "";
    while (Date.now() < deadline) {
      if (this.#exited) break;
      const r = await exec(
        [CTR, "--address", this.socket, "--connect-timeout", "1s", "version"],
        { allowFailure: true, timeoutMs: 5000 },
      ).catch((e) => ({ code: -1, stdout: "", stderr: String(e) }));
      if (r.code === 0 && /Server:/.test(r.stdout)) return;
      last = r.stderr.trim();
      await sleep(20);
    }
    const why = this.#exited ? "exited" : `did not answer within ${READY_TIMEOUT_MS} ms`;
    await this.#terminate();
    throw new Error(
      `containerd ${why} (last ctr error: ${last})\n--- ${this.logFile} (tail) ---\n${await this
        .logTail()}`,
    );
  }

  /** The last `lines` lines of containerd's log. */
  async logTail(lines = 30): Promise<string> {
    try {
      return (await Deno.readTextFile(this.logFile)).trimEnd().split("\n").slice(-lines).join(
        "\n",
      );
    } catch {
      return "(no log)";
    }
  }

  /** SIGTERMs containerd, SIGKILL after `graceMs`, and waits for it. */
  async #terminate(graceMs = 5000): Promise<void> {
    const child = this.#child;
    if (!child || this.#exited) {
      await this.#status;
      return;
    }
    try {
      child.kill("SIGTERM");
    } catch {
      // exited meanwhile
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = await Promise.race([
      this.#status!.then(() => false),
      new Promise<boolean>((r) => timer = setTimeout(() => r(true), graceMs)),
    ]);
    clearTimeout(timer);
    if (killed) {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    await this.#status;
  }

  /** `ctr --address SOCK -n NS ARGS...`; throws on a non-zero exit. */
  ctr(ns: string, ...args: string[]): Promise<RunResult> {
    return this.#ctr(ns, args);
  }

  #ctr(ns: string, args: string[], opts: ExecOptions = {}): Promise<RunResult> {
    return exec(
      [CTR, "--address", this.socket, "--connect-timeout", "3s", "-n", ns, ...args],
      { ...opts, env: { PATH } },
    );
  }

  /** Tasks in namespace `ns` (`ctr task ls`). */
  async listTasks(ns: string): Promise<TaskInfo[]> {
    const r = await this.#ctr(ns, ["task", "ls"]);
    return r.stdout.trim().split("\n").slice(1).filter((l) => l.trim()).map((l) => {
      const [id, pid, status] = l.trim().split(/\s+/);
      return { id, pid: Number(pid), status };
    });
  }

  /** Container ids in namespace `ns` (`ctr container ls -q`). */
  async listContainers(ns: string): Promise<string[]> {
    const r = await this.#ctr(ns, ["container", "ls", "-q"]);
    return r.stdout.split("\n").map((s) => s.trim()).filter((s) => s);
  }

  /** Namespaces containerd knows (`ctr namespace ls -q`). */
  async listNamespaces(): Promise<string[]> {
    const r = await this.#ctr("default", ["namespace", "ls", "-q"]);
    return r.stdout.split("\n").map((s) => s.trim()).filter((s) => s);
  }

  /** Live shims of this containerd (found in /proc by their `-address`). */
  shims(): ShimProcess[] {
    return listShims().filter((s) => s.address === this.socket);
  }

  /** The `ctr` flags shared by `run` and `container create` for `opts`. */
  #containerFlags(opts: RunContainerOptions): string[] {
    const flags = [
      "--rootfs",
      "--read-only",
      "--env",
      "PATH=/bin:/sbin:/usr/bin:/usr/sbin",
      "--mount",
      "type=tmpfs,src=tmpfs,dst=/tmp,options=nosuid:nodev:mode=1777:size=16m",
    ];
    for (const [k, v] of Object.entries(opts.labels ?? {})) flags.push("--label", `${k}=${v}`);
    if (opts.netns !== undefined) {
      try {
        Deno.statSync(opts.netns);
      } catch {
        throw new Error(`network namespace ${opts.netns} does not exist`);
      }
      flags.push("--with-ns", `network:${opts.netns}`);
    } else {
      flags.push("--net-host");
    }
    return flags;
  }

  #track(opts: RunContainerOptions): { namespace: string; id: string } {
    if (this.#stopped) throw new Error("this containerd was stopped");
    if (opts.cmd.length === 0) throw new Error("cmd must not be empty");
    const c = { namespace: opts.namespace, id: opts.id ?? `tfwc${randomHex(6)}` };
    const key = `${c.namespace}/${c.id}`;
    if (this.#created.has(key)) throw new Error(`container ${key} was already made here`);
    this.#created.set(key, c);
    this.#namespaces.add(c.namespace);
    return c;
  }

  /**
   * Creates and starts a container (one `ctr run -d`) and resolves once its
   * task is running (its pid 1 has been exec'd; a server in it may need a few
   * more ms to listen). On failure the container is removed again.
   */
  async run(opts: RunContainerOptions): Promise<ContainerHandle> {
    const { namespace, id } = this.#track(opts);
    const logPath = `${this.dir}/logs/${namespace}_${id}.log`;
    const r = await this.#ctr(namespace, [
      "run",
      "-d",
      "--log-uri",
      `file://${logPath}`,
      ...this.#containerFlags(opts),
      this.rootfs,
      id,
      ...opts.cmd,
    ], { allowFailure: true });
    const handle = this.#handle(namespace, id, logPath);
    if (r.code !== 0) {
      await handle.stop().catch(() => {});
      throw new Error(`ctr run ${namespace}/${id} failed: ${(r.stderr || r.stdout).trim()}`);
    }
    return handle;
  }

  /**
   * Creates the container only (`ctr container create`, same spec as
   * {@link run}); the caller starts its task with `start()` and can time the
   * two steps (containerd's `/containers/create` then `/tasks/create` +
   * `/tasks/start` events) separately. `pid()` throws until started.
   */
  async create(opts: RunContainerOptions): Promise<CreatedContainer> {
    const { namespace, id } = this.#track(opts);
    const logPath = `${this.dir}/logs/${namespace}_${id}.log`;
    const handle = this.#handle(namespace, id, logPath);
    const r = await this.#ctr(namespace, [
      "container",
      "create",
      ...this.#containerFlags(opts),
      this.rootfs,
      id,
      ...opts.cmd,
    ], { allowFailure: true });
    if (r.code !== 0) {
      await handle.stop().catch(() => {});
      throw new Error(`ctr container create ${namespace}/${id} failed: ${r.stderr.trim()}`);
    }
    return {
      ...handle,
      start: async () => {
        await this.#ctr(namespace, ["task", "start", "-d", "--log-uri", `file://${logPath}`, id]);
      },
    };
  }

  #handle(namespace: string, id: string, logPath: string): ContainerHandle {
    const task = async () => (await this.listTasks(namespace)).find((t) => t.id === id);
    return {
      id,
      namespace,
      logPath,
      pid: async () => {
        const t = await task();
        if (!t) throw new Error(`container ${namespace}/${id} has no task`);
        return t.pid;
      },
      status: async () => (await task())?.status,
      stop: () => this.#remove(namespace, id),
      exec: (cmd: string[]) =>
        this.#ctr(namespace, [
          "task",
          "exec",
          "--fifo-dir",
          `${this.dir}/fifo`,
          "--exec-id",
          `x${randomHex(6)}`,
          id,
          ...cmd,
        ], { allowFailure: true }),
    };
  }

  /**
   * SIGKILLs the task (waiting for it), deletes task and container; fine if
   * they are gone; throws only if the container is still listed afterwards.
   */
  async #remove(namespace: string, id: string): Promise<void> {
    const t = await this.#ctr(namespace, ["task", "delete", "--force", id], {
      allowFailure: true,
    });
    const c = await this.#ctr(namespace, ["container", "delete", id], { allowFailure: true });
    if (c.code !== 0 && (await this.listContainers(namespace)).includes(id)) {
      throw new Error(
        `could not remove container ${namespace}/${id}: ${t.stderr.trim()} ${c.stderr.trim()}`,
      );
    }
    this.#created.delete(`${namespace}/${id}`);
  }

  /**
   * SIGKILLs containerd only (by its pid) and waits for it to exit; shims and
   * containers keep running.
   */
  async kill(): Promise<void> {
    if (!this.#child || this.#exited) return;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
    await this.#status;
  }

  /**
   * Starts containerd again on the same root, state and socket (SIGKILLing the
   * current one first if it still runs) and waits until it answers.
   */
  async restart(): Promise<void> {
    if (this.#stopped) throw new Error("this containerd was stopped");
    await this.kill();
    await this.#launch();
  }

  /**
   * Removes every task and container (in every namespace containerd lists,
   * plus those used here), SIGTERMs containerd (SIGKILL after 5 s), makes sure
   * its shims are gone and deletes the temp dir. Restarts a killed containerd
   * first; if that fails, SIGKILLs this containerd's shims' children and shims
   * (found by socket address) directly. Calling it twice is fine.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const problems: string[] = [];
    let daemonOk = !this.#exited;
    if (!daemonOk && this.#child) {
      try {
        await this.#launch();
        daemonOk = true;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        problems.push(`restart for cleanup failed: ${msg.split("\n")[0]}`);
      }
    }
    if (daemonOk) {
      const namespaces = new Set(this.#namespaces);
      try {
        for (const ns of await this.listNamespaces()) namespaces.add(ns);
      } catch (e) {
        problems.push(String(e));
      }
      for (const ns of namespaces) {
        try {
          const ids = new Set(await this.listContainers(ns));
          for (const t of await this.listTasks(ns)) ids.add(t.id);
          for (const c of this.#created.values()) if (c.namespace === ns) ids.add(c.id);
          for (const id of ids) await this.#remove(ns, id);
        } catch (e) {
          problems.push(String(e));
        }
      }
    }
    await this.#terminate();
    // Shims exit once their task is deleted; anything left is ours to end.
    // (Without a daemon nothing deletes the tasks: end them at once.)
    const deadline = Date.now() + (daemonOk ? 3000 : 0);
    let shims = this.shims();
    while (shims.length > 0 && Date.now() < deadline) {
      await sleep(20);
      shims = this.shims();
    }
    if (shims.length > 0) {
      for (const s of shims) {
        for (const entry of Deno.readDirSync("/proc")) {
          if (/^\d+$/.test(entry.name) && parentPid(Number(entry.name)) === s.pid) {
            try {
              Deno.kill(Number(entry.name), "SIGKILL");
            } catch {
              // gone
            }
          }
        }
        try {
          Deno.kill(s.pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      problems.push(`SIGKILLed shims left after cleanup: ${shims.map((s) => s.pid).join(" ")}`);
      for (let i = 0; i < 100 && this.shims().length > 0; i++) await sleep(20);
      await removeShimResidue(this.socket, shims);
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    const left = this.shims();
    if (left.length > 0) {
      problems.push(`shims still alive: ${left.map((s) => s.pid).join(" ")}`);
      throw new Error(`PrivateContainerd.stop: ${problems.join("; ")}`);
    }
    if (problems.length > 0) console.warn(`PrivateContainerd.stop: ${problems.join("; ")}`);
  }
}

/**
 * What a SIGKILLed shim could not remove: its socket
 * (`/run/containerd/s/sha256(ADDRESS/NS/ID)`), runc's state dir and the
 * task's cgroups (`/NS/ID` in every hierarchy). Best effort.
 */
async function removeShimResidue(socket: string, shims: ShimProcess[]): Promise<void> {
  let hierarchies: string[] = [];
  try {
    hierarchies = [...Deno.readDirSync("/sys/fs/cgroup")].filter((e) => e.isDirectory).map((e) =>
      `/sys/fs/cgroup/${e.name}`
    );
  } catch {
    // no cgroup fs
  }
  for (const { namespace, id } of shims) {
    if (!namespace || !id) continue;
    const hash = Array.from(
      new Uint8Array(
        await crypto.subtle.digest(
          "SHA-256",
          new TextEncoder().encode(`${socket}/${namespace}/${id}`),
        ),
      ),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    await Deno.remove(`/run/containerd/s/${hash}`).catch(() => {});
    await Deno.remove(`/run/containerd/runc/${namespace}/${id}`, { recursive: true }).catch(
      () => {},
    );
    for (const h of hierarchies) await Deno.remove(`${h}/${namespace}/${id}`).catch(() => {});
  }
}

/** Starts a {@link PrivateContainerd}, runs `fn` with it, and always stops it. */
export async function withContainerd<T>(
  fn: (c: PrivateContainerd) => Promise<T>,
  opts: ContainerdOptions = {},
): Promise<T> {
  const c = await PrivateContainerd.start(opts);
  try {
    return await fn(c);
  } finally {
    await c.stop();
  }
}
