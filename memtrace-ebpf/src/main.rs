//! memtrace's kernel programs: per-process memory accounting aggregated in maps, rare events
//! (exits, OOM kills) through a ring buffer. One probe family per module; each entry point is a
//! thin wrapper around a `try_*` function. Every program is a BTF tracepoint or, for the writes
//! to a traced command's output pipes (`pipes`), an fexit program: they attach without tracefs
//! and cost far less per event than classic (perf) tracepoints or kprobes.
#![no_std]
#![no_main]
// Atomic add on map values: core's atomics don't expose fetch_add for the BPF target.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod faults;
mod lifecycle;
mod maps;
mod pipes;
mod reclaim;
mod rss;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable loop; code paths that could panic are avoided instead.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
