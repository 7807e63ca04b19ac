/**
 * YAML text to the positioned tree the validator reads: a fast parser for
 * the plain subset policy files are written in, js-yaml's event stream for
 * everything else.
 *
 * @module
 */

export { type YEntry, type YMap, type YNode, type YScalar, type YValue } from "./nodes.ts";
export { parseYamlTree } from "./parse.ts";
