/**
 * Netlink attributes (struct nlattr / struct rtattr): a 4-byte header
 * `{ u16 len; u16 type }` followed by the payload, each attribute padded to a
 * multiple of 4 bytes. `len` counts the header and the payload, not the padding.
 * Nested attributes carry a list of attributes as their payload.
 *
 * Integers are in host byte order, like everything else in netlink.
 *
 * @module
 */

import { NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLA_HDRLEN, NLA_TYPE_MASK } from "./constants.ts";
import { NetlinkDecodeError } from "./errors.ts";

/** True when this machine is little-endian (netlink integers are in host order). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Rounds a length up to the netlink alignment (4 bytes). */
export function align4(length: number): number {
  return (length + 3) & ~3;
}

/** One decoded attribute; `payload` is a view into the decoded buffer. */
export interface Attribute {
  /** The attribute type without the NLA_F_NESTED / NLA_F_NET_BYTEORDER flags. */
  readonly type: number;
  /** NLA_F_NESTED was set. (Older attributes are nested without it.) */
  readonly nestedFlag: boolean;
  /** NLA_F_NET_BYTEORDER was set. */
  readonly netByteOrder: boolean;
  /** The payload, without header or padding. */
  readonly payload: Uint8Array;
  /** Offset of the attribute header, counted from the start of the outermost buffer. */
  readonly offset: number;
}

/**
 * Decodes a run of attributes filling `bytes`. `baseOffset` is where `bytes`
 * starts in the enclosing message; it only makes error messages precise.
 * Throws {@link NetlinkDecodeError} on a length that is too small or runs past
 * the end, and on trailing bytes too short to be an attribute.
 */
export function decodeAttributes(bytes: Uint8Array, baseOffset = 0): Attribute[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Attribute[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const left = bytes.length - offset;
    if (left < NLA_HDRLEN) {
      throw new NetlinkDecodeError(
        `${left} trailing byte(s) after the last attribute`,
        baseOffset + offset,
      );
    }
    const len = view.getUint16(offset, HOST_LITTLE_ENDIAN);
    const rawType = view.getUint16(offset + 2, HOST_LITTLE_ENDIAN);
    if (len < NLA_HDRLEN) {
      throw new NetlinkDecodeError(
        `attribute length ${len} is shorter than its header`,
        baseOffset + offset,
      );
    }
    if (len > left) {
      throw new NetlinkDecodeError(
        `attribute (type ${
          rawType & NLA_TYPE_MASK
        }) length ${len} runs past the end (${left} left)`,
        baseOffset + offset,
      );
    }
    out.push({
      type: rawType & NLA_TYPE_MASK,
      nestedFlag: (rawType & NLA_F_NESTED) !== 0,
      netByteOrder: (rawType & NLA_F_NET_BYTEORDER) !== 0,
      payload: bytes.subarray(offset + NLA_HDRLEN, offset + len),
      offset: baseOffset + offset,
    });
    // The padding of the last attribute may be missing; never step past the end.
    offset = Math.min(bytes.length, offset + align4(len));
  }
  return out;
}

/** Decodes the payload of a nested attribute as a run of attributes. */
export function decodeNested(attr: Attribute): Attribute[] {
  return decodeAttributes(attr.payload, attr.offset + NLA_HDRLEN);
}

/** Indexes attributes by type; when a type repeats, the last one wins. */
export function attributesByType(attrs: readonly Attribute[]): Map<number, Attribute> {
  return new Map(attrs.map((a) => [a.type, a]));
}

function expectSize(attr: Attribute, size: number, what: string): DataView {
  if (attr.payload.length < size) {
    throw new NetlinkDecodeError(
      `${what} attribute (type ${attr.type}) has ${attr.payload.length} byte(s), expected ${size}`,
      attr.offset,
    );
  }
  return new DataView(attr.payload.buffer, attr.payload.byteOffset, attr.payload.byteLength);
}

/** Reads a u8 attribute. */
export function readU8(attr: Attribute, what = "u8"): number {
  return expectSize(attr, 1, what).getUint8(0);
}

/** Reads a u32 attribute (host order). */
export function readU32(attr: Attribute, what = "u32"): number {
  return expectSize(attr, 4, what).getUint32(0, HOST_LITTLE_ENDIAN);
}

/** Reads an s32 attribute (host order). */
export function readS32(attr: Attribute, what = "s32"): number {
  return expectSize(attr, 4, what).getInt32(0, HOST_LITTLE_ENDIAN);
}

/** Reads a string attribute: the bytes up to the first NUL (or the end), as UTF-8. */
export function readString(attr: Attribute): string {
  const nul = attr.payload.indexOf(0);
  const text = nul < 0 ? attr.payload : attr.payload.subarray(0, nul);
  return new TextDecoder().decode(text);
}

/** Encodes one attribute with its padding. `type` may include NLA_F_* flags. */
export function encodeAttribute(type: number, payload: Uint8Array): Uint8Array {
  const len = NLA_HDRLEN + payload.length;
  if (len > 0xffff) throw new RangeError(`netlink attribute too long (${len} bytes)`);
  const out = new Uint8Array(align4(len));
  const view = new DataView(out.buffer);
  view.setUint16(0, len, HOST_LITTLE_ENDIAN);
  view.setUint16(2, type, HOST_LITTLE_ENDIAN);
  out.set(payload, NLA_HDRLEN);
  return out;
}

/** Encodes a u32 attribute (host order). */
export function u32Attribute(type: number, value: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, value, HOST_LITTLE_ENDIAN);
  return encodeAttribute(type, payload);
}

/** Encodes an s32 attribute (host order). */
export function s32Attribute(type: number, value: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setInt32(0, value, HOST_LITTLE_ENDIAN);
  return encodeAttribute(type, payload);
}

/** Encodes a NUL-terminated string attribute (NLA_NUL_STRING / NLA_STRING both accept it). */
export function stringAttribute(type: number, value: string): Uint8Array {
  const text = new TextEncoder().encode(value);
  const payload = new Uint8Array(text.length + 1);
  payload.set(text);
  return encodeAttribute(type, payload);
}

/** Encodes a nested attribute (with NLA_F_NESTED) holding already-encoded attributes. */
export function nestedAttribute(type: number, children: readonly Uint8Array[]): Uint8Array {
  return encodeAttribute(type | NLA_F_NESTED, concatBytes(children));
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
