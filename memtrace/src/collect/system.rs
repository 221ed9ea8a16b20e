//! Machine-wide memory state (RAM, swap, PSI) from /proc, into the shared model.
use std::path::Path;

use crate::{
    collect::model::SystemSample,
    host::procfs::{self, ProcError},
};

/// Reads `/proc/meminfo` and `/proc/pressure/memory` under `proc_root`.
pub fn sample(proc_root: &Path) -> Result<SystemSample, ProcError> {
    let info = procfs::read_meminfo(proc_root)?;
    let psi = procfs::read_memory_psi(proc_root)?;
    Ok(from_parts(&info, psi.as_ref()))
}

/// Builds the model's system line from parsed parts.
pub fn from_parts(info: &procfs::MemInfo, psi: Option<&procfs::Psi>) -> SystemSample {
    let used = info.total.saturating_sub(info.available);
    SystemSample {
        mem_total_bytes: info.total,
        mem_available_bytes: info.available,
        mem_used_bytes: used,
        mem_used_percent: percent(used, info.total),
        swap_total_bytes: info.swap_total,
        swap_free_bytes: info.swap_free,
        psi_some_avg10: psi.map(|p| p.some.avg10),
        psi_full_avg10: psi.map(|p| p.full.avg10),
    }
}

/// `part` as a percentage of `whole` (0 when whole is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    //! The used/percent arithmetic.
    use super::*;

    #[test]
    fn used_is_total_minus_available() {
        let info = procfs::MemInfo {
            total: 1000,
            available: 250,
            ..Default::default()
        };
        let sample = from_parts(&info, None);
        assert_eq!(sample.mem_used_bytes, 750);
        assert!((sample.mem_used_percent - 75.0).abs() < 1e-9);
        assert_eq!(sample.psi_some_avg10, None);
        assert_eq!(percent(1, 0), 0.0);
    }
}
