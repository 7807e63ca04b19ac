/**
 * The pins of one agent under `--pin-path` (docs/OPERATIONS.md, "Pins"):
 *
 * ```text
 * PIN/maps/<map>                        every map of the data path
 * PIN/links/host/<iface>                the XDP link of a host interface
 * PIN/links/netns/<dev>-<ino>/<dir>-<n> a container's veth end, per network namespace
 * PIN/links/veth/<n>                    a veth's host end filtered before its container claims it
 * ```
 *
 * bpffs refuses names with a dot, so interface names are written with `.`
 * (and `%`) escaped. A namespace's links sit in a directory of their own, so
 * that everything kept for a container that ended goes with one removal.
 *
 * @module
 */

import { ensurePinDir, removePinDir } from "../datapath/mod.ts";

/** Which side of a container's veth pair a link filters. */
export type Side = "ingress" | "egress";

/** A link pin found under the pin path. */
export type LinkPin =
  | { readonly kind: "host"; readonly path: string; readonly iface: string }
  | {
    readonly kind: "netns";
    readonly path: string;
    readonly netns: string;
    readonly side: Side;
    readonly ifindex: number;
  }
  | { readonly kind: "veth"; readonly path: string; readonly ifindex: number };

function escapeName(name: string): string {
  return name.replaceAll("%", "%25").replaceAll(".", "%2e");
}

function unescapeName(name: string): string {
  return name.replaceAll("%2e", ".").replaceAll("%25", "%");
}

/** A network namespace id (`dev:ino`) as a directory name. */
function netnsDirName(netns: string): string {
  return netns.replace(":", "-");
}

/** The pin layout under one `--pin-path`. */
export class PinSet {
  constructor(readonly root: string) {}

  get mapsDir(): string {
    return `${this.root}/maps`;
  }

  hostLink(iface: string): string {
    return `${this.root}/links/host/${escapeName(iface)}`;
  }

  netnsDir(netns: string): string {
    return `${this.root}/links/netns/${netnsDirName(netns)}`;
  }

  sideLink(netns: string, side: Side, ifindex: number): string {
    return `${this.netnsDir(netns)}/${side}-${ifindex}`;
  }

  vethLink(ifindex: number): string {
    return `${this.root}/links/veth/${ifindex}`;
  }

  /**
   * Makes the directories links are pinned in (checking the pin path is on a
   * bpffs: BpffsNotMountedError otherwise).
   */
  ensure(): void {
    for (const d of [this.mapsDir, `${this.root}/links/host`, `${this.root}/links/veth`]) {
      ensurePinDir(d);
    }
    ensurePinDir(`${this.root}/links/netns`);
  }

  /** Makes the directory of a namespace's links. */
  ensureNetns(netns: string): void {
    Deno.mkdirSync(this.netnsDir(netns), { recursive: true });
  }

  /** Removes a namespace's directory once it holds no link (false if it still does). */
  removeNetnsIfEmpty(netns: string): boolean {
    try {
      Deno.removeSync(this.netnsDir(netns));
      return true;
    } catch {
      return false;
    }
  }

  /** Whether anything is pinned under the pin path. */
  exists(): boolean {
    try {
      Deno.statSync(this.root);
      return true;
    } catch {
      return false;
    }
  }

  /** Whether the maps are pinned. */
  hasMaps(): boolean {
    try {
      return [...Deno.readDirSync(this.mapsDir)].length > 0;
    } catch {
      return false;
    }
  }

  /** Every link pinned under the pin path. */
  links(): LinkPin[] {
    const out: LinkPin[] = [];
    for (const e of list(`${this.root}/links/host`)) {
      out.push({ kind: "host", path: `${this.root}/links/host/${e}`, iface: unescapeName(e) });
    }
    for (const e of list(`${this.root}/links/veth`)) {
      out.push({ kind: "veth", path: `${this.root}/links/veth/${e}`, ifindex: Number(e) });
    }
    for (const dir of list(`${this.root}/links/netns`)) {
      const netns = dir.replace("-", ":");
      for (const e of list(`${this.root}/links/netns/${dir}`)) {
        const m = /^(ingress|egress)-(\d+)$/.exec(e);
        if (!m) continue;
        out.push({
          kind: "netns",
          path: `${this.root}/links/netns/${dir}/${e}`,
          netns,
          side: m[1] as Side,
          ifindex: Number(m[2]),
        });
      }
    }
    return out;
  }

  /** The namespaces that have a directory of links. */
  netnsDirs(): string[] {
    return list(`${this.root}/links/netns`).map((d) => d.replace("-", ":"));
  }

  /** Removes every pin and the pin path itself; false if there was nothing. */
  remove(): boolean {
    return removePinDir(this.root);
  }
}

function list(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** Removes a pin; false if it was not there. */
export function unpin(path: string): boolean {
  try {
    Deno.removeSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
