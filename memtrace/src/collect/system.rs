//! Machine-wide memory state (RAM, swap, PSI) from /proc, into the shared model: read once
//! ([`sample`]) or every interval through files kept open ([`SystemFiles`]).
use std::path::{Path, PathBuf};

use crate::{
    collect::model::SystemSample,
    host::procfs::{self, OpenFile, ProcError},
};

/// Reads `/proc/meminfo` and `/proc/pressure/memory` under `proc_root`.
pub fn sample(proc_root: &Path) -> Result<SystemSample, ProcError> {
    let info = procfs::read_meminfo(proc_root)?;
    let psi = procfs::read_memory_psi(proc_root)?;
    Ok(from_parts(&info, psi.as_ref()))
}

/// `meminfo` and `pressure/memory` kept open for a sampler that reads them every interval (no
/// path lookup, open and close each time). Where either cannot be opened or read, each sample
/// reads both by path as [`sample`] does, with its errors and its "no PSI".
#[derive(Debug)]
pub struct SystemFiles {
    proc_root: PathBuf,
    open: Option<(OpenFile, OpenFile)>,
}

impl SystemFiles {
    /// Opens the files under `proc_root`.
    pub fn open(proc_root: &Path) -> Self {
        let open = OpenFile::open(&proc_root.join("meminfo"))
            .and_then(|meminfo| Ok((meminfo, OpenFile::open(&proc_root.join("pressure/memory"))?)))
            .ok();
        Self {
            proc_root: proc_root.to_owned(),
            open,
        }
    }

    /// The machine's memory state now.
    pub fn sample(&mut self) -> Result<SystemSample, ProcError> {
        if let Some((meminfo, pressure)) = &mut self.open {
            let info = meminfo.text().ok().and_then(procfs::parse_meminfo);
            let psi = pressure.text().ok().and_then(procfs::parse_psi);
            if let (Some(info), Some(psi)) = (info, psi) {
                return Ok(from_parts(&info, Some(&psi)));
            }
            self.open = None;
        }
        sample(&self.proc_root)
    }
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
    fn open_files_read_what_a_fresh_read_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            std::fs::create_dir_all(dir.path().join("pressure")).expect("mkdir");
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write("meminfo", "MemTotal: 100 kB\nMemAvailable: 40 kB\n");
        write(
            "pressure/memory",
            "some avg10=1.00 avg60=0 avg300=0 total=1\nfull avg10=0.50 avg60=0 avg300=0 total=1\n",
        );
        let mut files = SystemFiles::open(dir.path());
        assert_eq!(files.sample().ok(), sample(dir.path()).ok());
        write("meminfo", "MemTotal: 100 kB\nMemAvailable: 10 kB\n");
        let now = files.sample().expect("sample");
        assert_eq!(now.mem_available_bytes, 10 * 1024, "read again, not cached");
        assert_eq!(now.psi_full_avg10, Some(0.5));
        // Without PSI: read by path, "no PSI" as before.
        std::fs::remove_file(dir.path().join("pressure/memory")).expect("rm");
        let mut files = SystemFiles::open(dir.path());
        assert_eq!(files.sample().expect("sample").psi_some_avg10, None);
    }

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
