//! Dev-only helpers shared by memtrace's tests (unit and privileged integration tests) and its
//! benchmarks (`xtask bench`): memory cgroups with a limit that clean up after themselves
//! ([`cgroup`]), children killed by PID when dropped ([`child`]), the names left in a directory
//! ([`files`]), and a process's CPU time and memory read from /proc ([`proc`]). Nothing here is
//! part of the memtrace binary.
pub mod cgroup;
pub mod child;
pub mod files;
pub mod proc;
