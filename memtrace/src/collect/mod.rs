//! Collection: everything that turns the kernel's and the GPU driver's counters into the one
//! [`model::Snapshot`] all consumers read. The [`tracer`] loads the eBPF programs and reads
//! their maps, [`gpu`] samples NVML, the [`sampler`] joins both with /proc identities and
//! derives rates over a sliding window ([`growth`]); [`system`] reads the machine-wide lines and
//! [`scope`] says whose memory counts (the machine, or the container's cgroup and its limit).
pub mod gpu;
pub mod growth;
pub mod model;
pub mod sampler;
pub mod scope;
pub mod system;
pub mod tracer;
