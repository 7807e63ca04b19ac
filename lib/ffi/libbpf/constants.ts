/**
 * The numbers of libbpf's and the kernel's API that tinyfw passes: map update
 * flags, XDP attach flags, map and program types, tc attach points, link types.
 *
 * @module
 */

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

/** XDP attach flags (linux/if_link.h). */
export const XDP_FLAGS_UPDATE_IF_NOEXIST = 1;
export const XDP_FLAGS_SKB_MODE = 2;
export const XDP_FLAGS_DRV_MODE = 4;
export const XDP_FLAGS_HW_MODE = 8;
export const XDP_FLAGS_REPLACE = 16;

/** Map types tinyfw cares about (enum bpf_map_type). */
export const BPF_MAP_TYPE_HASH = 1;
export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_PERCPU_HASH = 5;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
export const BPF_MAP_TYPE_LRU_HASH = 9;
export const BPF_MAP_TYPE_LRU_PERCPU_HASH = 10;
export const BPF_MAP_TYPE_LPM_TRIE = 11;
export const BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21;
export const BPF_MAP_TYPE_RINGBUF = 27;
/** enum bpf_prog_type: tc classifier (SEC("tc")), XDP. */
export const BPF_PROG_TYPE_SCHED_CLS = 3;
export const BPF_PROG_TYPE_XDP = 6;

/** enum bpf_tc_attach_point. */
export const BPF_TC_INGRESS = 1;
export const BPF_TC_EGRESS = 2;
export const BPF_TC_CUSTOM = 4;
/** enum bpf_tc_flags. */
export const BPF_TC_F_REPLACE = 1;

/** enum bpf_attach_type BPF_XDP. */
export const BPF_XDP = 37;
/** enum bpf_link_type BPF_LINK_TYPE_XDP. */
export const BPF_LINK_TYPE_XDP = 6;
/** BPF_F_REPLACE: bpf_link_update only if the link runs `old_prog_fd`. */
export const BPF_F_REPLACE = 4;

/** BPF_OBJ_NAME_LEN: the size of a program's or map's name field, NUL included. */
export const BPF_OBJ_NAME_LEN = 16;
