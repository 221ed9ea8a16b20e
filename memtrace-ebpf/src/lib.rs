//! Empty library target: lets `memtrace` name this crate as a build dependency so cargo rebuilds
//! the eBPF object when its sources change. The programs live in the `memtrace` binary target.
#![no_std]
