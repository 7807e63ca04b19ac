/**
 * Netlink and rtnetlink constants used by tinyfw.
 *
 * Every value was checked against the kernel UAPI headers (linux/netlink.h,
 * linux/rtnetlink.h, linux/if_link.h, linux/if.h, linux/net_namespace.h) by
 * compiling a C program that prints them, not by counting enum members.
 *
 * @module
 */

/** `AF_NETLINK`, the socket family (and `sockaddr_nl.nl_family`). */
export const AF_NETLINK = 16;
/** `AF_UNSPEC`, the family put in rtgenmsg/ifinfomsg requests. */
export const AF_UNSPEC = 0;
/** `NETLINK_ROUTE`, the rtnetlink protocol number. */
export const NETLINK_ROUTE = 0;

/** `SOL_NETLINK`, the setsockopt level of the NETLINK_* options. */
export const SOL_NETLINK = 270;
/** Ask for the original request to be left out of error messages. */
export const NETLINK_CAP_ACK = 10;
/** Ask for extended acks (NLMSGERR_ATTR_* TLVs after an error). */
export const NETLINK_EXT_ACK = 11;
/** Ask the kernel to validate the headers and attributes of GET requests strictly. */
export const NETLINK_GET_STRICT_CHK = 12;

/** Control message types (below NLMSG_MIN_TYPE). */
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

/** nlmsghdr.nlmsg_flags bits. */
export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_DUMP_INTR = 0x10;
/** `NLM_F_ROOT | NLM_F_MATCH`. */
export const NLM_F_DUMP = 0x300;
/** On an NLMSG_ERROR: the original request was cut to its header. */
export const NLM_F_CAPPED = 0x100;
/** On an NLMSG_ERROR or NLMSG_DONE: extended ack TLVs follow. */
export const NLM_F_ACK_TLVS = 0x200;

/** enum nlmsgerr_attrs. */
export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;

/** Attribute type flags; the type proper is the low 14 bits. */
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = 0x3fff;

/** rtnetlink message types. */
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWNSID = 88;
export const RTM_GETNSID = 90;

/** Multicast group bit of link notifications (`1 << (RTNLGRP_LINK - 1)`). */
export const RTMGRP_LINK = 1;

/** IFLA_* link attributes (linux/if_link.h). */
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_EXT_MASK = 29;
export const IFLA_LINK_NETNSID = 37;
export const IFLA_XDP = 43;
/** Alias of IFLA_IF_NETNSID: run a GET request in the namespace with this nsid. */
export const IFLA_TARGET_NETNSID = 46;
export const IFLA_ALT_IFNAME = 53;

/** IFLA_INFO_* attributes nested in IFLA_LINKINFO. */
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_SLAVE_KIND = 4;

/** IFLA_XDP_* attributes nested in IFLA_XDP. */
export const IFLA_XDP_ATTACHED = 2;
export const IFLA_XDP_PROG_ID = 4;
export const IFLA_XDP_DRV_PROG_ID = 5;
export const IFLA_XDP_SKB_PROG_ID = 6;
export const IFLA_XDP_HW_PROG_ID = 7;

/** IFLA_XDP_ATTACHED values. */
export const XDP_ATTACHED_DRV = 1;
export const XDP_ATTACHED_SKB = 2;
export const XDP_ATTACHED_HW = 3;

/**
 * IFLA_EXT_MASK bit: leave IPv6 and VF statistics out of link messages
 * (IFLA_STATS/IFLA_STATS64 are sent regardless).
 */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

/** ifinfomsg.ifi_flags bits (linux/if.h). */
export const IFF_UP = 1 << 0;
export const IFF_RUNNING = 1 << 6;

/** NETNSA_* attributes of RTM_GETNSID / RTM_NEWNSID (linux/net_namespace.h). */
export const NETNSA_NSID = 1;
export const NETNSA_PID = 2;
export const NETNSA_FD = 3;
export const NETNSA_CURRENT_NSID = 5;
/** The nsid value meaning "no id assigned to that namespace from here". */
export const NETNSA_NSID_NOT_ASSIGNED = -1;

/** Size of struct nlmsghdr. */
export const NLMSG_HDRLEN = 16;
/** Size of struct nlattr / struct rtattr header. */
export const NLA_HDRLEN = 4;
/** Size of struct ifinfomsg. */
export const IFINFOMSG_LEN = 16;
/** Size of struct rtgenmsg (1 byte) aligned to 4, as it sits in a message. */
export const RTGENMSG_ALIGNED_LEN = 4;
/** Longest IFLA_IFNAME (IFNAMSIZ - 1); longer names go in IFLA_ALT_IFNAME. */
export const IFNAME_MAX_LEN = 15;
/** Longest IFLA_ALT_IFNAME (ALTIFNAMSIZ - 1). */
export const ALTIFNAME_MAX_LEN = 127;
