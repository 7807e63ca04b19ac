/**
 * tinyfw: a container-aware firewall agent with an XDP data plane.
 * Entry point: parse the command line, run the subcommand, map errors to exit codes.
 */
import { type Command, type HostPort, parseCommandLine, type RunCommand } from "./lib/cli/mod.ts";
import {
  ConfigError,
  describeError,
  EXIT_OK,
  exitCodeOf,
  getLogger,
  type Logger,
  RuntimeError,
  setupLogging,
} from "./lib/base/mod.ts";
import {
  detach,
  explain,
  formatDetach,
  formatExplanation,
  formatStatus,
  requireBpfPrivileges,
  status,
  statusJson,
  summarize,
} from "./lib/commands/mod.ts";
import {
  Agent,
  listenMetrics,
  lockNetns,
  lockPinPath,
  type MetricsServer,
  watchFile,
} from "./lib/agent/mod.ts";
import {
  defaultPolicy,
  defaultPolicyYaml,
  loadPolicyFile,
  type Policy,
  requireValid,
  type ValidFile,
} from "./lib/policy/mod.ts";

/** Loads `file` for a one-shot command: warnings to stderr, errors thrown (exit 2). */
function readPolicySet(file: string): ValidFile {
  return requireValid(loadPolicyFile(file), (line) => console.error(line));
}

/** The policy `explain` decides with: `--name`, the only one, or the built-in default. */
function policyToExplain(file: string | undefined, name: string | undefined): Policy {
  if (file === undefined) {
    if (name !== undefined && name !== defaultPolicy().name) {
      throw new ConfigError(
        `--name ${name} needs --policy FILE: without it the built-in default applies.`,
      );
    }
    return defaultPolicy();
  }
  const { policies } = readPolicySet(file).set;
  const names = policies.map((p) => p.name).join(", ");
  if (name === undefined) {
    if (policies.length === 1) return policies[0];
    throw new ConfigError(
      `${file} has ${policies.length} policies (${names}); choose one with --name.`,
    );
  }
  const found = policies.find((p) => p.name === name);
  if (!found) throw new ConfigError(`${file} has no policy named "${name}"; it has: ${names}.`);
  return found;
}

/** `run`: attach, then wait for SIGINT/SIGTERM and detach (or, with --keep-on-exit, leave). */
async function run(cmd: RunCommand): Promise<number> {
  const log = getLogger("agent");
  requireBpfPrivileges();
  const netns = lockNetns();
  try {
    const pins = lockPinPath(cmd.pinPath);
    try {
      return await runLocked(cmd, log, `${netns.path} ${pins.path}`);
    } finally {
      pins.release();
    }
  } finally {
    netns.release();
  }
}

/** `run` once this namespace's and this pin path's agent locks are held. */
async function runLocked(cmd: RunCommand, log: Logger, lock: string): Promise<number> {
  // Listen before anything is attached, so a signal during start-up still detaches.
  const stopSignal = new Promise<string>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, () => resolve(sig));
    }
  });
  // SIGHUP's default action would end the process: take it over before start-up too.
  const started: { agent?: Agent; hup?: boolean } = {};
  Deno.addSignalListener("SIGHUP", () => {
    if (started.agent) void started.agent.reload("SIGHUP");
    else started.hup = true;
  });
  // Bound once the configuration is checked and before anything is attached or adopted:
  // a port in use changes nothing.
  let metrics: MetricsServer | undefined;
  const listen = async (addr: HostPort) => {
    try {
      metrics = await listenMetrics(addr, getLogger("metrics"));
    } catch (e) {
      throw new RuntimeError(
        `Cannot serve metrics at ${addr.hostname}:${addr.port}: ` +
          `${describeError(e)}; choose another --metrics-addr.`,
        { cause: e },
      );
    }
  };
  let agent: Agent;
  try {
    agent = started.agent = await Agent.start({
      ifaces: cmd.ifaces,
      xdpMode: cmd.xdpMode,
      policyFile: cmd.policy,
      audit: cmd.audit,
      containers: cmd.cmode
        ? { socket: cmd.containerdSocket, namespaces: cmd.namespaces }
        : undefined,
      pinPath: cmd.pinPath,
      keepOnExit: cmd.keepOnExit,
      lock,
      log,
      prepare: cmd.metricsAddr ? () => listen(cmd.metricsAddr!) : undefined,
    });
  } catch (e) {
    await metrics?.close();
    throw e;
  }
  metrics?.serve(agent);
  let watch: { close(): void } | undefined;
  if (cmd.policy) {
    const file = cmd.policy;
    watch = watchFile(file, () => void agent.reload("file changed", { ifChanged: true }));
    log.info("reloading {file} on SIGHUP and when it changes", { file });
    if (started.hup) void agent.reload("SIGHUP");
  }
  const signal = await stopSignal;
  log.info(cmd.keepOnExit ? "{signal} received: exiting" : "{signal} received: detaching", {
    signal,
  });
  watch?.close();
  await metrics?.close();
  await agent.idle();
  await agent.stop();
  return EXIT_OK;
}

/** `check`: validate a policy file and summarise what it compiles to (no file: the default). */
function check(file: string | undefined): number {
  if (file === undefined) {
    console.log("# The built-in default policy (used when --policy is not given):");
    console.log(defaultPolicyYaml());
    console.log(summarize({ policies: [defaultPolicy()] }));
    return EXIT_OK;
  }
  const { set, compiled } = readPolicySet(file);
  console.log(summarize(set, compiled));
  return EXIT_OK;
}

async function dispatch(cmd: Command): Promise<number> {
  switch (cmd.cmd) {
    case "help":
    case "version":
      console.log(cmd.text);
      return EXIT_OK;
    case "run":
      return await run(cmd);
    case "check":
      return check(cmd.policy);
    case "explain": {
      requireBpfPrivileges();
      const e = explain(cmd, policyToExplain(cmd.policy, cmd.name));
      console.log(cmd.json ? JSON.stringify(e) : formatExplanation(e));
      return EXIT_OK;
    }
    case "status": {
      requireBpfPrivileges();
      const s = status(cmd.pinPath);
      console.log(cmd.json ? statusJson(s) : formatStatus(s));
      return EXIT_OK;
    }
    case "detach": {
      requireBpfPrivileges();
      const r = detach(cmd.pinPath);
      console.log(formatDetach(cmd.pinPath, r));
      for (const f of r.failures) console.error(`tinyfw: could not remove ${f}`);
      return r.failures.length ? 1 : EXIT_OK;
    }
  }
}

/** Runs tinyfw with `args`; returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  let cmd: Command;
  try {
    cmd = parseCommandLine(args);
  } catch (e) {
    console.error(`tinyfw: ${describeError(e)}`);
    return exitCodeOf(e);
  }
  if ("logLevel" in cmd) setupLogging({ level: cmd.logLevel, format: cmd.logFormat });
  try {
    return await dispatch(cmd);
  } catch (e) {
    console.error(`tinyfw: ${describeError(e)}`);
    if (!(e instanceof ConfigError || e instanceof RuntimeError) && e instanceof Error) {
      getLogger().debug("{stack}", { stack: e.stack });
    }
    return exitCodeOf(e);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
