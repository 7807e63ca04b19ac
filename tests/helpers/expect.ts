/**
 * Where the reference model says the data path counts a decision: a
 * `stats` entry for what no rule decides (non-IP, malformed, neighbour
 * discovery, a reply), else the counter of the deciding rule or the default.
 * Shared by the differential tests.
 */
import {
  counterOffset,
  STAT_MALFORMED,
  STAT_ND,
  STAT_NONIP,
  STAT_REPLY,
} from "../../lib/abi/layout.ts";
import type { Decision } from "../../lib/model/evaluate.ts";

/** The `stats` index of a decision no rule made, by its reason. */
export const REASON_STAT: Partial<Record<Decision["reason"], number>> = {
  nonip: STAT_NONIP,
  malformed: STAT_MALFORMED,
  nd: STAT_ND,
  reply: STAT_REPLY,
};

/** The counter a rule's (or the default's) decision goes to, for a policy at `counterBase`. */
export function counterOf(
  counterBase: number,
  ruleCount: number,
  d: Decision,
  dir: number,
): number {
  return counterBase + counterOffset(ruleCount, d.reason === "rule" ? d.ruleIndex! : null, dir);
}
