/**
 * The typed policy model of SPEC §3 and what works on it alone: names,
 * limits, protocols, selection of a policy for an interface or container,
 * the built-in default policy, and the diff of two versions.
 *
 * @module
 */

export { DEFAULT_POLICY_NAME, defaultPolicy, defaultPolicyYaml } from "./default.ts";
export { diffPolicy, formatDiff } from "./diff.ts";
export {
  MAX_CIDRS,
  MAX_DIAGNOSTICS,
  MAX_POLICIES,
  MAX_POLICY_FILE_BYTES,
  MAX_RULES,
  MAX_SHOWN_CHARS,
  MAX_YAML_DEPTH,
  MAX_YAML_NODES,
} from "./limits.ts";
export {
  ifnameProblem,
  isNamespaceName,
  lookalikeKey,
  MAX_IFNAME_LENGTH,
  MAX_NAME_LENGTH,
  nameProblem,
} from "./names.ts";
export {
  hasIcmpKey,
  hasPorts,
  PROTO_CLASSES,
  protoClassOf,
  PROTOCOL_NUMBER,
  protocolNumber,
} from "./protocol.ts";
export {
  type ContainerIdentity,
  fallbackSelection,
  selectForInterface,
  selectionForContainer,
} from "./select.ts";
export {
  type Action,
  type Cidr,
  type Direction,
  type IcmpMatch,
  type Policy,
  type PolicySet,
  type PortRange,
  type Protocol,
  type Rule,
  type RuleDirection,
  type Selector,
} from "./types.ts";
