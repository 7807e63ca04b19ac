/**
 * Drop samples: the `events` ring buffer the XDP program writes a
 * `tfw_event` to for a dropped packet (and, in audit mode, for one that would
 * have been dropped), at most SAMPLES_PER_SEC per CPU and second
 * (docs/DATAPATH.md §8). {@link EventReader} consumes them and hands each,
 * decoded ({@link DropEvent}), to a callback.
 *
 * @example
 * ```ts
 * const reader = EventReader.open(dp.maps.events, (e) => log.info(formatDropEvent(e)));
 * reader.start();          // waits for samples without blocking the event loop
 * // ...
 * await reader.close();
 * ```
 *
 * @module
 */

import { RingBuffer, waitReadable } from "../ffi/mod.ts";
import { formatEndpoint, formatIp } from "../net/mod.ts";
import {
  CpuStateValue,
  decode,
  DIR_EGRESS,
  EVENT_AUDIT,
  EVENT_DROP,
  EventValue,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "../abi/mod.ts";
import { type BpfMap, type Datapath, u32Key } from "./object.ts";

/** A decoded `tfw_event`. */
export interface DropEvent {
  /** "drop": dropped; "audit": audit mode passed what the rules deny. */
  kind: "drop" | "audit";
  /** The attachment (program instance) that saw the packet. */
  attachId: number;
  /** The counter of the rule (or default action) that denied it. */
  counter: number;
  direction: "ingress" | "egress";
  /** Frame length in bytes. */
  bytes: number;
  family: 4 | 6;
  /** IP protocol number. */
  proto: number;
  /** "tcp", "udp", "sctp", "icmp", "icmpv6", or the protocol number as text. */
  protocol: string;
  /** Source and destination addresses as text. */
  src: string;
  dst: string;
  /** TCP/UDP/SCTP ports (absent for other protocols and for later fragments). */
  sport?: number;
  dport?: number;
  /** ICMP/ICMPv6 type and code (absent for later fragments). */
  icmpType?: number;
  icmpCode?: number;
  /** ICMP/ICMPv6 echo request/reply identifier. */
  echoId?: number;
}

const PROTOCOL_NAMES: Readonly<Record<number, string>> = {
  [PROTO_TCP]: "tcp",
  [PROTO_UDP]: "udp",
  [PROTO_SCTP]: "sctp",
  [PROTO_ICMP]: "icmp",
  [PROTO_ICMPV6]: "icmpv6",
};

function isEcho(proto: number, type: number): boolean {
  return proto === PROTO_ICMP ? type === 0 || type === 8 : type === 128 || type === 129;
}

/** Decodes one ring buffer record (a `tfw_event`). Throws RangeError for a wrong size or kind. */
export function decodeDropEvent(record: Uint8Array): DropEvent {
  if (record.length < EventValue.size) {
    throw new RangeError(`a tfw_event is ${EventValue.size} bytes, got ${record.length}`);
  }
  const v = decode(EventValue, record);
  const kindValue = Number(v.kind);
  if (kindValue !== EVENT_DROP && kindValue !== EVENT_AUDIT) {
    throw new RangeError(`unknown tfw_event kind ${kindValue}`);
  }
  const family = Number(v.family) === 6 ? 6 : 4;
  const size = family === 4 ? 4 : 16;
  const proto = Number(v.proto);
  const event: DropEvent = {
    kind: kindValue === EVENT_DROP ? "drop" : "audit",
    attachId: Number(v.attach_id),
    counter: Number(v.counter),
    direction: Number(v.dir) === DIR_EGRESS ? "egress" : "ingress",
    bytes: Number(v.bytes),
    family,
    proto,
    protocol: PROTOCOL_NAMES[proto] ?? String(proto),
    src: formatIp((v.saddr as Uint8Array).subarray(0, size)),
    dst: formatIp((v.daddr as Uint8Array).subarray(0, size)),
  };
  if (Number(v.has_l4)) {
    const sport = Number(v.sport);
    const dport = Number(v.dport);
    if (proto === PROTO_ICMP || proto === PROTO_ICMPV6) {
      event.icmpType = dport >> 8;
      event.icmpCode = dport & 0xff;
      if (isEcho(proto, dport >> 8)) event.echoId = sport;
    } else {
      event.sport = sport;
      event.dport = dport;
    }
  }
  return event;
}

/** One line for a log: `drop ingress tcp 192.0.2.1:40000 -> 198.51.100.1:80 (60 bytes)`. */
export function formatDropEvent(e: DropEvent): string {
  let what = `${e.protocol} ${formatEndpoint(e.src, e.sport)} -> ${formatEndpoint(e.dst, e.dport)}`;
  if (e.icmpType !== undefined) {
    what += ` type ${e.icmpType} code ${e.icmpCode}`;
    if (e.echoId !== undefined) what += ` id ${e.echoId}`;
  }
  return `${e.kind} ${e.direction} ${what} (${e.bytes} bytes)`;
}

/** Options of {@link EventReader.open}. */
export interface EventReaderOptions {
  /**
   * Called with a record that does not decode (a newer or older program's
   * layout) instead of throwing; default: ignore it.
   */
  onBadRecord?: (record: Uint8Array, error: Error) => void;
  /**
   * Called when the event callback throws while the reader runs ({@link
   * EventReader.start}); the reader goes on with the next event. Without it,
   * the loop stops and the promise of `start()` rejects.
   */
  onError?: (error: unknown) => void;
}

/**
 * Consumes the `events` ring buffer. {@link start} waits for records on the
 * ring buffer's epoll fd (poll(2) on a worker thread, so the event loop keeps
 * running) and hands each decoded event to the callback, on the JS thread;
 * {@link consume} drains what is waiting, synchronously.
 */
export class EventReader {
  readonly #rb: RingBuffer;
  readonly #onError?: (error: unknown) => void;
  readonly #abort = new AbortController();
  #loop: Promise<void> | null = null;
  #closed = false;

  private constructor(rb: RingBuffer, onError?: (error: unknown) => void) {
    this.#rb = rb;
    this.#onError = onError;
  }

  /** Opens a reader on the ring buffer map `events` (e.g. `dp.maps.events`). */
  static open(
    events: BpfMap,
    onEvent: (e: DropEvent) => void,
    opts: EventReaderOptions = {},
  ): EventReader {
    const rb = RingBuffer.open(events.fd, (record) => {
      let event: DropEvent;
      try {
        event = decodeDropEvent(record);
      } catch (e) {
        opts.onBadRecord?.(record, e as Error);
        return;
      }
      onEvent(event);
    });
    return new EventReader(rb, opts.onError);
  }

  /** Hands every waiting event to the callback now; returns how many there were. */
  consume(): number {
    if (this.#closed) throw new Error("event reader is closed");
    return this.#rb.consume();
  }

  /**
   * Starts delivering events as they arrive, until {@link close}. Returns the
   * loop's promise, which resolves at close; it rejects if the ring buffer
   * fails, or if the callback throws and there is no `onError`.
   */
  start(): Promise<void> {
    if (this.#closed) throw new Error("event reader is closed");
    this.#loop ??= this.#run();
    return this.#loop;
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    const fd = this.#rb.epollFd;
    while (!signal.aborted) {
      try {
        await waitReadable(fd, { signal });
      } catch (e) {
        if (signal.aborted) return;
        throw e;
      }
      if (signal.aborted) return;
      try {
        this.#rb.consume();
      } catch (e) {
        if (!this.#onError) throw e;
        this.#onError(e);
      }
    }
  }

  /** Stops the loop (if started) and frees the ring buffer consumer. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    try {
      await this.#loop;
    } catch {
      // the loop's failure was reported to whoever awaited start()
    } finally {
      this.#rb.close();
    }
  }
}

/**
 * Drop samples the data path could not send (per-CPU budget spent, or the
 * ring buffer full), summed over CPUs. Samples received plus this equal the
 * packets dropped (and, in audit mode, passed) by the rules.
 */
export function samplesLost(dp: Datapath): bigint {
  const values = dp.maps.cpu_state.lookupPerCpu(u32Key(0)) ?? [];
  let lost = 0n;
  for (const v of values) lost += decode(CpuStateValue, v).lost as bigint;
  return lost;
}
