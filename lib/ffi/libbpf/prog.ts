/**
 * Programs by fd: test runs (BPF_PROG_TEST_RUN), fds by id, program info.
 *
 * @module
 */

import { BPF_OBJ_NAME_LEN } from "./constants.ts";
import { StructBuffer, STRUCTS } from "./structs.ts";
import { call, cStringIn, infoByFd, pointerValue, stableBytes } from "./symbols.ts";

// Test runs, info, ids, pins.

/** Input of {@link progTestRun}. */
export interface TestRunInput {
  data: Uint8Array;
  /** Runs (BPF_PROG_TEST_RUN repeat); default 1. */
  repeat?: number;
  /** Room for the output packet; default data.length + 4096. */
  dataOutSize?: number;
}

/** Output of {@link progTestRun}. */
export interface TestRunOutput {
  retval: number;
  /** Mean run time per repetition, in nanoseconds (the kernel's `duration`). */
  duration: number;
  dataOut: Uint8Array;
}

/** bpf_prog_test_run_opts (BPF_PROG_TEST_RUN) of the program `fd` on a packet. */
export function progTestRun(fd: number, input: TestRunInput): TestRunOutput {
  const dataIn = stableBytes(input.data.length);
  dataIn.set(input.data);
  const dataOut = stableBytes(input.dataOutSize ?? input.data.length + 4096);
  const opts = new StructBuffer(STRUCTS.bpf_test_run_opts, { stable: true })
    .setU64("data_in", pointerValue(dataIn))
    .setU64("data_out", pointerValue(dataOut))
    .setU32("data_size_in", dataIn.length)
    .setU32("data_size_out", dataOut.length)
    .setU32("repeat", input.repeat ?? 1);
  call("bpf_prog_test_run_opts", (s) => s.bpf_prog_test_run_opts(fd, opts.bytes));
  return {
    retval: opts.u32("retval"),
    duration: opts.u32("duration"),
    dataOut: dataOut.slice(0, opts.u32("data_size_out")),
  };
}

/** bpf_prog_get_fd_by_id: a new (close-on-exec) fd for a loaded program. */
export function progGetFdById(id: number): number {
  return call(`bpf_prog_get_fd_by_id ${id}`, (s) => s.bpf_prog_get_fd_by_id(id));
}

/** The parts of struct bpf_prog_info tinyfw reads. */
export interface ProgInfo {
  /** enum bpf_prog_type (BPF_PROG_TYPE_XDP = 6). */
  type: number;
  id: number;
  /** The program's tag, 16 hex digits (as bpftool prints it). */
  tag: string;
  /** Up to 15 characters of the program's name. */
  name: string;
  /** Ids of the maps the program uses. */
  mapIds: number[];
}

/** bpf_obj_get_info_by_fd on a program fd. */
export function progInfo(fd: number): ProgInfo {
  let mapIds = new Uint32Array(32);
  for (;;) {
    const info = new StructBuffer(STRUCTS.bpf_prog_info, { stable: true })
      .setU32("nr_map_ids", mapIds.length)
      .setU64("map_ids", pointerValue(new Uint8Array(mapIds.buffer)));
    infoByFd("bpf_obj_get_info_by_fd (program)", fd, info.bytes);
    const nrMaps = info.u32("nr_map_ids");
    if (nrMaps > mapIds.length) {
      mapIds = new Uint32Array(new ArrayBuffer(nrMaps * 4));
      continue;
    }
    return {
      type: info.u32("type"),
      id: info.u32("id"),
      tag: Array.from(info.slice("tag", 8), (b) => b.toString(16).padStart(2, "0")).join(""),
      name: cStringIn(info.slice("name", BPF_OBJ_NAME_LEN)),
      mapIds: Array.from(mapIds.subarray(0, nrMaps)),
    };
  }
}
