/**
 * tinyfw: a container-aware firewall agent with an XDP data plane.
 * Entry point: parse the command line, run the subcommand, map errors to exit codes.
 */
import { type Command, parseCommandLine, type RunCommand } from "./lib/cli.ts";
import { ConfigError, describeError, EXIT_OK, exitCodeOf, RuntimeError } from "./lib/errors.ts";
import { getLogger, setupLogging } from "./lib/log.ts";
import { requireBpfPrivileges } from "./lib/privileges.ts";
import { Agent } from "./lib/agent.ts";
import { explain, formatExplanation } from "./lib/explain.ts";
import { defaultPolicy, defaultPolicyYaml } from "./lib/policy/default.ts";
import { compilePolicy } from "./lib/policy/compile.ts";
import type { Policy } from "./lib/policy/types.ts";

/** The policy a command asks for: for now the built-in default only. */
function selectPolicy(file: string | undefined): Policy {
  if (file !== undefined) {
    throw new ConfigError(
      `Policy files are not supported by this version of tinyfw yet; run without --policy ` +
        `to use the built-in default policy (tinyfw check prints it).`,
    );
  }
  return defaultPolicy();
}

/** `run`: attach, then wait for SIGINT/SIGTERM and detach. */
async function run(cmd: RunCommand): Promise<number> {
  const log = getLogger("agent");
  const unavailable = [
    cmd.cmode && "--cmode",
    cmd.audit && "--audit",
    cmd.keepOnExit && "--keep-on-exit",
    cmd.metricsAddr && "--metrics-addr",
  ].filter(Boolean);
  if (unavailable.length) {
    throw new ConfigError(
      `${unavailable.join(", ")} ${unavailable.length > 1 ? "are" : "is"} not available in ` +
        `this version of tinyfw yet; run without ${unavailable.length > 1 ? "them" : "it"}.`,
    );
  }
  const policy = selectPolicy(cmd.policy);
  requireBpfPrivileges();
  const agent = Agent.start({ ifaces: cmd.ifaces, xdpMode: cmd.xdpMode, policy, log });
  const signal = await new Promise<string>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, () => resolve(sig));
    }
  });
  log.info("{signal} received: detaching", { signal });
  agent.stop();
  return EXIT_OK;
}

/** `check`: validate a policy and summarise what it compiles to. */
function check(file: string | undefined): number {
  const policy = selectPolicy(file);
  if (file === undefined) {
    console.log("# The built-in default policy (used when --policy is not given):");
    console.log(defaultPolicyYaml());
  }
  const compiled = compilePolicy(policy);
  for (const [i, dir] of (["ingress", "egress"] as const).entries()) {
    const d = compiled.dirs[i];
    console.log(
      `policy ${policy.name} ${dir}: ${policy.rules.length} rules, ${d.classes} address classes, ` +
        `${d.v4.length + d.v6.length} CIDR entries, ${d.hash.length + d.lpm.length} ` +
        `${d.mode === "hash" ? "hash" : "LPM"} entries`,
    );
  }
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
      const e = explain(cmd, selectPolicy(cmd.policy));
      console.log(cmd.json ? JSON.stringify(e) : formatExplanation(e));
      return EXIT_OK;
    }
    case "status":
    case "detach":
      throw new RuntimeError(
        `"tinyfw ${cmd.cmd}" is not available in this version of tinyfw yet.`,
      );
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
