/**
 * What compiling one policy file may take (docs/POLICY.md, "Limits"): the
 * compiled entries of each map, all policies and both directions together,
 * within the file's share of the data plane's maps; and a number of steps,
 * which bounds the compiler's time on any file.
 *
 * A step is one candidate rule examined for one address class, one interval
 * resolved, or one rule compared while classes are merged: the compiler's
 * work that is not already bounded by the entries it produces.
 *
 * @module
 */

import {
  FILE_MAX_ADDR_ENTRIES,
  FILE_MAX_LPM_ENTRIES,
  FILE_MAX_RULE_ENTRIES,
} from "../../abi/mod.ts";

/** Most compiler steps for one policy file (about two seconds of compiling). */
export const MAX_COMPILE_STEPS = 40_000_000;

/** A policy that cannot be compiled into the data plane's maps. */
export class CompileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CompileError";
  }
}

/** The maps whose entries a file's share is counted in. */
export type BudgetedMap = "lpm_v4" | "lpm_v6" | "rule_hash" | "port_lpm";

/** What is left of one file's share of the maps, and of its steps. */
export class CompileBudget {
  readonly left: Record<BudgetedMap, number>;
  #steps: number;

  constructor(
    limits: Partial<Record<BudgetedMap | "steps", number>> = {},
  ) {
    this.left = {
      lpm_v4: limits.lpm_v4 ?? FILE_MAX_ADDR_ENTRIES,
      lpm_v6: limits.lpm_v6 ?? FILE_MAX_ADDR_ENTRIES,
      rule_hash: limits.rule_hash ?? FILE_MAX_RULE_ENTRIES,
      port_lpm: limits.port_lpm ?? FILE_MAX_LPM_ENTRIES,
    };
    this.#steps = limits.steps ?? MAX_COMPILE_STEPS;
  }

  /** The file's whole share of `map`. */
  static limit(map: BudgetedMap): number {
    return new CompileBudget().left[map];
  }

  /**
   * Takes `count` entries of `map` for `who` (`policy "web"`) in `dir`, or
   * throws a CompileError saying the file's share is used up.
   */
  take(
    map: BudgetedMap,
    count: number,
    who: string,
    dir: string,
    hint: string,
    opts: { atLeast?: boolean } = {},
  ): void {
    if (count > this.left[map]) {
      const limit = CompileBudget.limit(map);
      const used = limit - this.left[map];
      const n = `${opts.atLeast ? "at least " : ""}${count.toLocaleString("en-US")}`;
      throw new CompileError(
        `${who} needs ${n} ${map} entries for ${dir}, more than a ` +
          `policy file may use (${limit.toLocaleString("en-US")} in all${
            used > 0 ? `, ${used.toLocaleString("en-US")} of them taken before` : ""
          }); ${hint}`,
      );
    }
    this.left[map] -= count;
  }

  /** Spends `n` steps, or throws a CompileError once the file's steps are used up. */
  spend(n: number, what: string): void {
    this.#steps -= n;
    if (this.#steps < 0) {
      throw new CompileError(
        `${what} takes more than ${MAX_COMPILE_STEPS.toLocaleString("en-US")} steps to compile ` +
          "(address classes times the rules each must consider): rules without cidrs that come " +
          "before many rules with cidrs are considered for every address class; move them after, " +
          "or use fewer distinct CIDRs",
      );
    }
  }
}
