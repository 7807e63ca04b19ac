/**
 * The compiler (docs/DATAPATH.md §4): a policy to address classes and L4
 * entries within the file's budget, and the compile step of loading a set.
 *
 * @module
 */

export {
  type AddrClassEntry,
  type CompiledDirection,
  type CompiledPolicy,
  compilePolicy,
} from "./compile.ts";
export { compileSet } from "./compile_set.ts";
