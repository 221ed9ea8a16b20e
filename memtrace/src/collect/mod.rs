//! Collection: everything that turns the kernel's and the GPU driver's counters into the one
//! [`model::Snapshot`] all consumers read. The [`source`] is decided once at start: the
//! [`tracer`] loads the eBPF programs and reads their maps, or, where eBPF cannot load, the
//! [`proc_source`] reads the scope's processes from /proc. [`gpu`] samples NVML, the [`sampler`]
//! joins them with /proc identities and derives rates over a sliding window ([`growth`]);
//! [`system`] reads the machine-wide lines and [`scope`] says whose memory counts (the machine,
//! or the container's cgroup and its limit).
pub mod gpu;
pub mod growth;
pub mod model;
pub mod proc_source;
pub mod sampler;
pub mod scope;
pub mod source;
pub mod system;
pub mod tracer;
