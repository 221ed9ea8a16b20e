//! memtrace's host layer: everything memtrace reads from and does to the machine besides its
//! eBPF programs — /proc ([`procfs`], [`procscan`]), memory cgroups ([`cgroup`]), kernel BTF
//! ([`btf`]) and tracefs ([`tracefs`]), freezing a cgroup on either hierarchy ([`freezer`]),
//! the v2 cgroups with memory limits of their own and how they stand ([`limited_cgroups`]),
//! the cgroup memtrace itself runs in and the limit that
//! binds it ([`own_cgroup`]), privileges and clocks ([`privilege`], [`clock`]),
//! signals that cannot hit a recycled pid ([`pidfd`]), directories no other user can steer
//! ([`safe_path`]), proportional memory of a process tree ([`smaps`]), sshd ([`sshd`]), sysctls ([`sysctl`]), swap ([`swap`]), cache and temp
//! cleanup ([`reclaim`]), the files users name as input ([`input`]: regular files only,
//! size-capped), and the units users type and read ([`units`]).
//!
//! It knows nothing of memtrace's model or commands, so the collectors, the guard, the tools
//! and the test kit all build on it (the dependency only points this way).

pub mod btf;
pub mod cgroup;
pub mod clock;
pub mod freezer;
pub mod input;
pub mod limited_cgroups;
pub mod own_cgroup;
pub mod pidfd;
pub mod privilege;
pub mod procfs;
pub mod procscan;
pub mod reclaim;
pub mod safe_path;
pub mod smaps;
pub mod sshd;
pub mod swap;
pub mod sysctl;
pub mod tracefs;
pub mod units;
