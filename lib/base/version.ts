/**
 * tinyfw's version, from deno.json (embedded by `deno compile`).
 *
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };

/** tinyfw's version. */
export const VERSION: string = denoJson.version;
