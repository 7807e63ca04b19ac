/**
 * rtnetlink for tinyfw: {@link RtnetlinkClient} (links, nsids, link
 * notifications) and the types it returns. The wire codecs live in
 * attributes.ts, message.ts, link.ts and nsid.ts.
 *
 * @module
 */

export { type LinkQueryOptions, RtnetlinkClient } from "./rtnetlink.ts";
export type { Link, LinkXdp, OperState, XdpMode } from "./link.ts";
export {
  type LinkEvent,
  LinkSubscription,
  type LinkSubscriptionOptions,
} from "./link_subscription.ts";
export { NetlinkDecodeError, NetlinkError } from "./errors.ts";
export { NETNSA_NSID_NOT_ASSIGNED } from "./constants.ts";
