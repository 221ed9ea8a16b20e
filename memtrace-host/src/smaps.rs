//! Proportional memory from `/proc/PID/smaps_rollup`: a page shared by n processes counts 1/n
//! in each, so the copy-on-write pages a forked worker still shares with its parent count once
//! in the sum over a process tree (anon + shmem + swap summed per process counts them once per
//! process). Reading it walks the process's page tables, so it is for a traced tree at its
//! samples, not for every process on the machine.
use std::{io, path::Path};

use crate::procfs::ProcError;

/// The lines of `smaps_rollup` memtrace uses, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollup {
    /// `Pss_Anon`: the proportional share of its anonymous pages.
    pub pss_anon: u64,
    /// `Pss_Shmem`.
    pub pss_shmem: u64,
    /// `SwapPss`.
    pub swap_pss: u64,
    /// `Anonymous`: its anonymous pages counted whole (0 where the line is missing).
    pub anonymous: u64,
}

impl Rollup {
    /// `Pss_Anon + Pss_Shmem + SwapPss`: the proportional share of what anon + shmem + swap
    /// count whole.
    pub fn footprint(&self) -> u64 {
        self.pss_anon
            .saturating_add(self.pss_shmem)
            .saturating_add(self.swap_pss)
    }

    /// The footprint had the process's anonymous memory been `anon` bytes (counted whole) with
    /// the pages it shares now: `anon − (Anonymous − Pss_Anon) + Pss_Shmem + SwapPss`. The
    /// discount for sharing comes from the same walk as both its terms, so pages the process
    /// faults in meanwhile (private ones: counted whole in both) do not change it.
    pub fn footprint_with_anon(&self, anon: u64) -> u64 {
        let shared_discount = self.anonymous.saturating_sub(self.pss_anon);
        anon.saturating_sub(shared_discount)
            .saturating_add(self.pss_shmem)
            .saturating_add(self.swap_pss)
    }
}

/// Parses `smaps_rollup`. `None` when the kernel does not split PSS (Pss_Anon appeared in
/// Linux 5.6) or the text is not a rollup.
pub fn parse_rollup(text: &str) -> Option<Rollup> {
    let (mut anon, mut shmem, mut swap, mut anonymous) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "Pss_Anon" => &mut anon,
            "Pss_Shmem" => &mut shmem,
            "SwapPss" => &mut swap,
            "Anonymous" => &mut anonymous,
            _ => continue,
        };
        let kib = value
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse::<u64>()
            .ok()?;
        *slot = Some(kib.checked_mul(1024)?);
    }
    Some(Rollup {
        pss_anon: anon?,
        pss_shmem: shmem.unwrap_or(0),
        swap_pss: swap.unwrap_or(0),
        anonymous: anonymous.unwrap_or(0),
    })
}

/// Parses `smaps_rollup`: `Pss_Anon + Pss_Shmem + SwapPss` in bytes (see [`parse_rollup`]).
pub fn parse_pss_footprint(text: &str) -> Option<u64> {
    parse_rollup(text).map(|r| r.footprint())
}

/// What reading one process's rollup gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pss {
    /// Its proportional anon + shmem + swap, bytes.
    Bytes(u64),
    /// It is gone (exited or reaped since it was listed): it holds nothing.
    Gone,
    /// Unreadable (no permission, no split PSS in this kernel, a format this parser does not
    /// know): the caller counts the process some other way.
    Unknown,
}

/// Reads `ROOT/PID/smaps_rollup`; [`Pss::Gone`] or [`Pss::Unknown`] where it cannot.
pub fn read_rollup(proc_root: &Path, pid: u32) -> Result<Rollup, Pss> {
    let path = proc_root.join(pid.to_string()).join("smaps_rollup");
    match crate::procfs::read(&path) {
        // A process that has exited but not been reaped has no mappings: an empty rollup.
        Ok(text) if text.trim().is_empty() => Err(Pss::Gone),
        Ok(text) => parse_rollup(&text).ok_or(Pss::Unknown),
        Err(ProcError::Io { source, .. })
            if source.kind() == io::ErrorKind::NotFound
                || source.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) =>
        {
            Err(Pss::Gone)
        }
        Err(_) => Err(Pss::Unknown),
    }
}

/// Reads `ROOT/PID/smaps_rollup`'s proportional footprint.
pub fn read_pss_footprint(proc_root: &Path, pid: u32) -> Pss {
    match read_rollup(proc_root, pid) {
        Ok(rollup) => Pss::Bytes(rollup.footprint()),
        Err(pss) => pss,
    }
}

#[cfg(test)]
mod tests {
    //! A rollup, one from a kernel without split PSS, garbage, and this process's own.
    use super::*;

    #[test]
    fn pss_of_anon_shmem_and_swap() {
        let text = "55ea73178000-7fff39af0000 ---p 00000000 00:00 0   [rollup]\n\
                    Rss:  1620 kB\nPss:  313 kB\nPss_Anon:  112 kB\nPss_File:  201 kB\n\
                    Pss_Shmem:  8 kB\nSwap:  0 kB\nSwapPss:  4 kB\n";
        assert_eq!(parse_pss_footprint(text), Some((112 + 8 + 4) * 1024));
        assert_eq!(
            parse_pss_footprint("Rss: 10 kB\nPss: 5 kB\n"),
            None,
            "no split"
        );
        assert_eq!(parse_pss_footprint("Pss_Anon: lots\n"), None);
        let rollup = parse_rollup(&format!("{text}Anonymous:  150 kB\n")).expect("a rollup");
        assert_eq!(rollup.anonymous, 150 * 1024);
        // 38 KiB of its anonymous pages are other processes' share: with 200 KiB of anon
        // memory counted whole, its footprint is 200 − 38 + 8 + 4 KiB.
        assert_eq!(
            rollup.footprint_with_anon(200 * 1024),
            (200 - 38 + 8 + 4) * 1024
        );
        assert_eq!(parse_pss_footprint(""), None);
    }

    #[test]
    fn reads_this_process_and_a_missing_one() {
        let root = Path::new("/proc");
        match read_pss_footprint(root, std::process::id()) {
            Pss::Bytes(bytes) => assert!(bytes > 0),
            other => panic!("own rollup: {other:?}"),
        }
        assert_eq!(read_pss_footprint(root, u32::MAX), Pss::Gone);
    }
}
