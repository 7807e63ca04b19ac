/**
 * rtnetlink for tinyfw: {@link RtnetlinkClient} (links, nsids, link
 * notifications, tc filter dumps) and the types it returns. The wire codecs
 * live in attributes.ts, message.ts, link.ts, nsid.ts and tc.ts.
 *
 * @module
 */

export { type LinkQueryOptions, RtnetlinkClient } from "./rtnetlink.ts";
export type { Link, LinkXdp, OperState, XdpMode } from "./link.ts";
export { TC_PARENT_CLSACT_EGRESS, TC_PARENT_CLSACT_INGRESS, type TcFilter } from "./tc.ts";
export {
  type LinkEvent,
  LinkSubscription,
  type LinkSubscriptionOptions,
} from "./link_subscription.ts";
export { NetlinkDecodeError, NetlinkError } from "./errors.ts";
export { NETNSA_NSID_NOT_ASSIGNED } from "./constants.ts";
