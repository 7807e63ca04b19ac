/**
 * `--help` and `--version`: the help of the whole command and of each
 * subcommand, rendered from the option table.
 *
 * @module
 */

import { VERSION } from "../base/mod.ts";
import {
  COMMANDS,
  LOG_OPTS,
  META_OPTS,
  type OptionName,
  OPTIONS,
  type OptionSpec,
  RUN_OPTS,
} from "./options.ts";
import { type Subcommand, SUBCOMMANDS } from "./types.ts";

/** `tinyfw <version>`, what `--version` prints. */
export function versionText(): string {
  return `tinyfw ${VERSION}`;
}

function optionRows(names: readonly OptionName[]): [string, string][] {
  return names.map((name) => {
    const spec: OptionSpec = OPTIONS[name];
    const flag = (spec.short ? `-${spec.short}, ` : "") + `--${name}` +
      (spec.arg ? ` ${spec.arg}` : "");
    const help = spec.help + (spec.shown ? ` (default: ${spec.shown})` : "");
    return [flag, help];
  });
}

/** Help lines are wrapped to this many columns. */
const HELP_COLUMNS = 80;

function table(rows: [string, string][], width: number): string {
  const indent = " ".repeat(width + 4);
  return rows.map(([left, right]) =>
    wrap(right, HELP_COLUMNS - indent.length)
      .map((line, i) => (i === 0 ? `  ${left.padEnd(width)}  ${line}` : indent + line))
      .join("\n")
  ).join("\n");
}

function wrap(text: string, columns: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > columns) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  return [...lines, line];
}

function section(title: string, body: string): string {
  return `${title}:\n${body}`;
}

const TOP_NOTES =
  "Run 'tinyfw help COMMAND' or 'tinyfw COMMAND --help' for a command's options.\n" +
  "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.";

/**
 * The help text of a subcommand, or the overview (which also lists run's
 * options, since `run` is implied) without one.
 */
export function helpText(topic?: Subcommand): string {
  if (topic === undefined) {
    const runRows = optionRows(RUN_OPTS);
    const globalRows = optionRows([...LOG_OPTS, ...META_OPTS]);
    const cmdRows: [string, string][] = SUBCOMMANDS.map((c) => [c, COMMANDS[c].summary]);
    const width = Math.max(...[...runRows, ...globalRows].map(([l]) => l.length));
    return [
      `tinyfw ${VERSION} - container-aware host firewall (eBPF/XDP)`,
      section("Usage", "  tinyfw [run] [options]\n  tinyfw COMMAND [options]"),
      section("Commands", table(cmdRows, 8)),
      section("Run options", table(runRows, width)),
      section("Global options", table(globalRows, width)),
      section(
        "Examples",
        [...COMMANDS.run.examples.slice(0, 3), ...COMMANDS.check.examples.slice(0, 1)]
          .map((e) => `  ${e}`).join("\n"),
      ),
      TOP_NOTES,
    ].join("\n\n");
  }
  const spec = COMMANDS[topic];
  const names: OptionName[] = topic === "help"
    ? ["help"]
    : [...spec.options, ...LOG_OPTS, ...META_OPTS];
  const rows = optionRows(names);
  const width = Math.max(...rows.map(([l]) => l.length));
  return [
    `tinyfw ${topic} - ${spec.summary}`,
    section("Usage", spec.usage.map((u) => `  ${u}`).join("\n")),
    spec.description,
    section("Options", table(rows, width)),
    section("Examples", spec.examples.map((e) => `  ${e}`).join("\n")),
  ].join("\n\n");
}
