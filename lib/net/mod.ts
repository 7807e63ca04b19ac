/**
 * IPv4 and IPv6 addresses and CIDRs: parsing (with the loader's fast
 * paths), formatting, masking and containment.
 *
 * @module
 */

export {
  type Cidr,
  CidrError,
  contains,
  containsCidr,
  formatEndpoint,
  formatIp,
  formatIPv4,
  makeCidr,
  maskAddress,
  parseIp,
} from "./cidr.ts";
export { CidrParser } from "./cidr_parser.ts";
export type { HostPort } from "./cidr.ts";
