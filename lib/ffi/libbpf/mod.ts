/**
 * Typed wrappers over libbpf.so.1 (1.1): bpf_object life cycle, map and
 * program handles, map element calls, XDP attach/query, tc (clsact) hooks and
 * filters, ring buffers, test runs, object info, pins and XDP links.
 * Failures throw {@link BpfError} carrying the errno, libbpf's message and
 * the lines libbpf logged during the call (the verifier log of a rejected
 * program, the kernel's netlink message of a refused attach...).
 *
 * Objects, maps and programs are opaque handles: their pointers never leave
 * this folder. Every buffer whose address libbpf keeps is referenced by its
 * handle for as long as libbpf may read it. libbpf is opened on first use.
 * The structs passed to libbpf and the kernel are defined once, in
 * structs.ts, and checked against the installed headers by a test.
 *
 * @module
 */

export { BpfError } from "../errors.ts";
export {
  type LibbpfLogLevel,
  type LibbpfLogSink,
  libbpfStrerror,
  setLibbpfLogger,
} from "./symbols.ts";
export {
  BPF_ANY,
  BPF_EXIST,
  BPF_F_REPLACE,
  BPF_LINK_TYPE_XDP,
  BPF_MAP_TYPE_ARRAY,
  BPF_MAP_TYPE_HASH,
  BPF_MAP_TYPE_LPM_TRIE,
  BPF_MAP_TYPE_LRU_HASH,
  BPF_MAP_TYPE_LRU_PERCPU_HASH,
  BPF_MAP_TYPE_PERCPU_ARRAY,
  BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
  BPF_MAP_TYPE_PERCPU_HASH,
  BPF_MAP_TYPE_RINGBUF,
  BPF_NOEXIST,
  BPF_OBJ_NAME_LEN,
  BPF_PROG_TYPE_SCHED_CLS,
  BPF_PROG_TYPE_XDP,
  BPF_TC_CUSTOM,
  BPF_TC_EGRESS,
  BPF_TC_F_REPLACE,
  BPF_TC_INGRESS,
  BPF_XDP,
  XDP_FLAGS_DRV_MODE,
  XDP_FLAGS_HW_MODE,
  XDP_FLAGS_REPLACE,
  XDP_FLAGS_SKB_MODE,
  XDP_FLAGS_UPDATE_IF_NOEXIST,
} from "./constants.ts";
export {
  BpfObject,
  BpfObjectMap,
  BpfObjectProgram,
  type OpenOptions,
  type SectionVar,
} from "./object.ts";
export {
  BatchError,
  type BatchOptions,
  mapDeleteBatch,
  mapDeleteElem,
  mapGetFdById,
  mapGetNextKey,
  type MapInfo,
  mapInfo,
  mapLookupElem,
  mapUpdateBatch,
  mapUpdateElem,
} from "./map.ts";
export { xdpAttach, xdpDetach, xdpQuery, type XdpQueryResult } from "./xdp.ts";
export {
  tcAttach,
  tcDetach,
  type TcFilterId,
  type TcHook,
  tcHookCreate,
  tcHookDestroy,
  tcQuery,
} from "./tc.ts";
export { RingBuffer } from "./ringbuf.ts";
export {
  progGetFdById,
  type ProgInfo,
  progInfo,
  progTestRun,
  type TestRunInput,
  type TestRunOutput,
} from "./prog.ts";
export { objGet, objPin } from "./pin.ts";
export {
  linkCreateXdp,
  linkGetFdById,
  linkIds,
  type LinkInfo,
  linkInfo,
  linkUpdate,
} from "./link.ts";
