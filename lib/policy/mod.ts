/**
 * Policies: the typed model (model/), YAML text to a positioned tree
 * (yaml/), validation with diagnostics (validate/), the compiler to map
 * entries (compile/), and loading a policy file through all of them
 * (load.ts).
 *
 * @module
 */

export {
  type AddrClassEntry,
  type CompiledDirection,
  type CompiledPolicy,
  compilePolicy,
} from "./compile/mod.ts";
export {
  fileError,
  loadPolicyFile,
  type LoadResult,
  parsePolicyText,
  readPolicyFile,
  requireValid,
  type ValidFile,
} from "./load.ts";
export {
  type ContainerIdentity,
  defaultPolicy,
  defaultPolicyYaml,
  diffPolicy,
  type Direction,
  fallbackSelection,
  formatDiff,
  hasIcmpKey,
  hasPorts,
  ifnameProblem,
  isNamespaceName,
  type Policy,
  type PolicySet,
  protoClassOf,
  PROTOCOL_NUMBER,
  protocolNumber,
  type Rule,
  selectForInterface,
  selectionForContainer,
  type Selector,
} from "./model/mod.ts";
export { formatDiagnostic } from "./validate/mod.ts";
