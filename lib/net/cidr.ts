/**
 * IPv4/IPv6 address and CIDR parsing, formatting and containment.
 *
 * Parsing is strict and every error says what is wrong with the text:
 * - IPv4: exactly four decimal octets 0..255, no leading zeros (`010` is
 *   ambiguous: octal to some tools), no spaces, no shorthand (`10.1`).
 * - IPv6: every RFC 4291 text form: full, `::`-compressed (once), embedded
 *   IPv4 in the last 32 bits (`::ffff:1.2.3.4`, `64:ff9b::10.0.0.1`); hex
 *   digits in either case; zone identifiers (`fe80::1%eth0`) are rejected.
 * - CIDR: `address/len`, len decimal without leading zeros, 0..32 or 0..128.
 *   Host bits past `len` are cleared by default (`10.1.2.3/8` → `10.0.0.0/8`)
 *   or rejected with `{ hostBits: "reject" }`; `parseCidrDetailed` reports
 *   them so a validator can warn. A bare address is a host route (/32, /128)
 *   unless `{ bareAddress: "reject" }`.
 *
 * Formatting is canonical: dotted quad; RFC 5952 for IPv6 (lowercase, no
 * leading zeros, the longest run of two or more zero groups compressed, the
 * first on a tie, IPv4-mapped `::ffff:0:0/96` addresses in mixed notation).
 *
 * @module
 */

/** A malformed address or CIDR; `message` is one sentence for the operator. */
/** An IPv4 or IPv6 CIDR. `addr` holds network bytes with host bits cleared. */
export interface Cidr {
  family: 4 | 6;
  /** 4 or 16 bytes, network order, every bit past `len` zero. */
  addr: Uint8Array;
  /** Prefix length: 0..32 (IPv4) or 0..128 (IPv6). */
  len: number;
  /** Canonical text, e.g. `10.0.0.0/8`, `fd00::/8`. */
  text: string;
}

export class CidrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CidrError";
  }
}

/** An address with its family. */
export interface IpAddress {
  family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  addr: Uint8Array;
}

const DEC_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function ipv4Problem(text: string): string | Uint8Array {
  if (text === "") return "it is empty";
  const parts = text.split(".");
  if (parts.length !== 4) return `it has ${parts.length} dot-separated parts, not 4`;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (p === "") return `part ${i + 1} is empty`;
    if (!/^[0-9]+$/.test(p)) return `part ${i + 1} ("${p}") is not a decimal number`;
    if (!DEC_OCTET.test(p)) {
      return p.length > 1 && p[0] === "0"
        ? `part ${i + 1} ("${p}") has a leading zero`
        : `part ${i + 1} ("${p}") is larger than 255`;
    }
    const v = Number(p);
    if (v > 255) return `part ${i + 1} ("${p}") is larger than 255`;
    out[i] = v;
  }
  return out;
}

/** Parses a dotted-quad IPv4 address into 4 bytes. Throws `CidrError`. */
export function parseIPv4(text: string): Uint8Array {
  const r = ipv4Problem(text);
  if (typeof r === "string") throw new CidrError(`invalid IPv4 address "${text}": ${r}`);
  return r;
}

function parseGroups(side: string, allowTrailingV4: boolean): number[] | string {
  if (side === "") return [];
  const parts = side.split(":");
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (p === "") return `empty group (a single ":" where "::" or a group is expected)`;
    if (p.includes(".")) {
      if (!allowTrailingV4 || i !== parts.length - 1) {
        return `embedded IPv4 "${p}" is only allowed as the last 32 bits`;
      }
      const v4 = ipv4Problem(p);
      if (typeof v4 === "string") return `embedded IPv4 "${p}": ${v4}`;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      continue;
    }
    if (!HEX_GROUP.test(p)) {
      return p.length > 4 ? `group "${p}" has more than 4 hex digits` : `group "${p}" is not hex`;
    }
    groups.push(parseInt(p, 16));
  }
  return groups;
}

function ipv6Problem(text: string): string | Uint8Array {
  if (text === "") return "it is empty";
  if (text.includes("%")) return "zone identifiers (%...) are not allowed";
  const halves = text.split("::");
  if (halves.length > 2) return `"::" appears more than once`;
  let groups: number[];
  if (halves.length === 2) {
    const head = parseGroups(halves[0], false);
    if (typeof head === "string") return head;
    const tail = parseGroups(halves[1], true);
    if (typeof tail === "string") return tail;
    const explicit = head.length + tail.length;
    if (explicit > 7) return `it has ${explicit} groups besides "::" (at most 7)`;
    groups = [...head, ...new Array(8 - explicit).fill(0), ...tail];
  } else {
    if (text.startsWith(":") || text.endsWith(":")) {
      return `it starts or ends with a single ":"`;
    }
    const all = parseGroups(text, true);
    if (typeof all === "string") return all;
    if (all.length !== 8) return `it has ${all.length} groups, not 8 (use "::" to compress zeros)`;
    groups = all;
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i] >> 8;
    out[2 * i + 1] = groups[i] & 0xff;
  }
  return out;
}

/** Parses any RFC 4291 IPv6 text form into 16 bytes. Throws `CidrError`. */
export function parseIPv6(text: string): Uint8Array {
  const r = ipv6Problem(text);
  if (typeof r === "string") throw new CidrError(`invalid IPv6 address "${text}": ${r}`);
  return r;
}

/** Parses an IPv4 or IPv6 address (IPv6 when the text contains ":"). */
export function parseIp(text: string): IpAddress {
  if (text.includes(":")) return { family: 6, addr: parseIPv6(text) };
  return { family: 4, addr: parseIPv4(text) };
}

/** Formats 4 bytes as a dotted quad. */
export function formatIPv4(addr: Uint8Array): string {
  return `${addr[0]}.${addr[1]}.${addr[2]}.${addr[3]}`;
}

/** Formats 16 bytes in RFC 5952 canonical form. */
export function formatIPv6(addr: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((addr[2 * i] << 8) | addr[2 * i + 1]);
  const isMapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (isMapped) return `::ffff:${formatIPv4(addr.subarray(12, 16))}`;
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number) => g.toString(16);
  if (bestStart < 0) return groups.map(hex).join(":");
  const head = groups.slice(0, bestStart).map(hex).join(":");
  const tail = groups.slice(bestStart + bestLen).map(hex).join(":");
  return `${head}::${tail}`;
}

/** Formats a 4- or 16-byte address. */
export function formatIp(addr: Uint8Array): string {
  if (addr.length === 4) return formatIPv4(addr);
  if (addr.length === 16) return formatIPv6(addr);
  throw new CidrError(`an IP address has 4 or 16 bytes, not ${addr.length}`);
}

/** A copy of `addr` with every bit past the first `len` cleared. */
export function maskAddress(addr: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(addr.length);
  const full = len >> 3;
  out.set(addr.subarray(0, full));
  if (full < addr.length && (len & 7) !== 0) {
    out[full] = addr[full] & (0xff << (8 - (len & 7)));
  }
  return out;
}

/** True when `addr` has a bit set past the first `len` bits. */
export function hasHostBits(addr: Uint8Array, len: number): boolean {
  const m = maskAddress(addr, len);
  for (let i = 0; i < addr.length; i++) if (m[i] !== addr[i]) return true;
  return false;
}

/** Builds a normalised CIDR (host bits cleared, canonical text). */
export function makeCidr(family: 4 | 6, addr: Uint8Array, len: number): Cidr {
  const size = family === 4 ? 4 : 16;
  if (addr.length !== size) {
    throw new CidrError(`an IPv${family} address has ${size} bytes, not ${addr.length}`);
  }
  if (!Number.isInteger(len) || len < 0 || len > size * 8) {
    throw new CidrError(`an IPv${family} prefix length is 0..${size * 8}, not ${len}`);
  }
  const net = maskAddress(addr, len);
  return { family, addr: net, len, text: `${formatIp(net)}/${len}` };
}

/** Options of `parseCidr`. */
export interface ParseCidrOptions {
  /** `clear` (default): `10.1.2.3/8` means `10.0.0.0/8`; `reject`: an error. */
  hostBits?: "clear" | "reject";
  /** `host` (default): a bare address is /32 or /128; `reject`: an error. */
  bareAddress?: "host" | "reject";
}

/** A parsed CIDR and what normalisation did to it. */
export interface ParsedCidr {
  cidr: Cidr;
  /** The text had bits set past the prefix length (they were cleared). */
  hostBitsSet: boolean;
  /** The text was a bare address (taken as a host route). */
  bare: boolean;
}

/** Parses `addr/len` (or a bare address), reporting what was normalised. */
export function parseCidrDetailed(text: string): ParsedCidr {
  if (typeof text !== "string") throw new CidrError(`a CIDR must be a string, not ${typeof text}`);
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let ip: IpAddress;
  try {
    ip = parseIp(addrText);
  } catch (e) {
    throw new CidrError(`invalid CIDR "${text}": ${(e as Error).message}`);
  }
  const max = ip.family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]*)$/.test(lenText)) {
      throw new CidrError(
        `invalid CIDR "${text}": prefix length "${lenText}" is not a decimal number without leading zeros`,
      );
    }
    len = Number(lenText);
    if (len > max) {
      throw new CidrError(
        `invalid CIDR "${text}": prefix length ${len} is larger than ${max} for IPv${ip.family}`,
      );
    }
  }
  return {
    cidr: makeCidr(ip.family, ip.addr, len),
    hostBitsSet: hasHostBits(ip.addr, len),
    bare: slash < 0,
  };
}

/** Parses `addr/len` into a normalised `Cidr`. Throws `CidrError`. */
export function parseCidr(text: string, options: ParseCidrOptions = {}): Cidr {
  const r = parseCidrDetailed(text);
  if (r.bare && options.bareAddress === "reject") {
    throw new CidrError(`invalid CIDR "${text}": a prefix length ("/N") is required`);
  }
  if (r.hostBitsSet && options.hostBits === "reject") {
    throw new CidrError(
      `invalid CIDR "${text}": bits are set past the prefix length (did you mean ${r.cidr.text}?)`,
    );
  }
  return r.cidr;
}

/** True when `addr` (4 or 16 bytes) is inside `cidr`; false across families. */
export function contains(cidr: Cidr, addr: Uint8Array): boolean {
  if (addr.length !== cidr.addr.length) return false;
  const full = cidr.len >> 3;
  for (let i = 0; i < full; i++) if (addr[i] !== cidr.addr[i]) return false;
  const rest = cidr.len & 7;
  if (rest === 0) return true;
  const mask = 0xff << (8 - rest) & 0xff;
  return (addr[full] & mask) === cidr.addr[full];
}

/** True when every address of `inner` is in `outer` (equal counts). */
export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.len <= inner.len && contains(outer, inner.addr);
}

/** Orders CIDRs by family, network address, then prefix length. */
export function compareCidrs(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.addr.length; i++) {
    if (a.addr[i] !== b.addr[i]) return a.addr[i] - b.addr[i];
  }
  return a.len - b.len;
}

/** A listening address, as given to `Deno.serve` (`hostname` has no brackets). */
export interface HostPort {
  readonly hostname: string;
  readonly port: number;
}

/** An address with a port, as written in logs and URLs: `10.0.0.1:53`, `[fd00::a]:53`. */
export function formatEndpoint(addr: string, port?: number): string {
  if (port === undefined) return addr;
  return addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`;
}
