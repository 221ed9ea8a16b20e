//! Reading and writing kernel knobs under a /proc root (`vm.swappiness` →
//! `ROOT/sys/vm/swappiness`), so the same code runs against the real /proc and a test tree.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// A knob could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// The file is missing or unreadable.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The kernel refused the write (not root, bad value, …).
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What was written.
        value: String,
        /// The cause.
        source: io::Error,
    },
    /// The content is not a number.
    #[error("unexpected content in {0}")]
    Format(String),
}

/// The file behind a dotted sysctl name (`vm.swappiness` → `PROC/sys/vm/swappiness`).
pub fn path_of(proc_root: &Path, name: &str) -> PathBuf {
    proc_root.join("sys").join(name.replace('.', "/"))
}

/// Reads a file and trims the trailing newline.
pub fn read_trimmed(path: &Path) -> Result<String, SysctlError> {
    fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| SysctlError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// Reads a file holding one integer (a sysctl, `oom_score_adj`).
pub fn read_int(path: &Path) -> Result<i64, SysctlError> {
    read_trimmed(path)?
        .parse()
        .map_err(|_| SysctlError::Format(path.display().to_string()))
}

/// Writes `value` (plus a newline) into an existing file, as `sysctl -w` does; never creates it.
pub fn write_value(path: &Path, value: &str) -> Result<(), SysctlError> {
    write_to(open_for_write(path, value)?, path, value)
}

/// Opens an existing knob for writing `value` (never creates it): where the knob cannot be
/// written at all (a read-only /proc/sys, no permission) this is what fails.
pub fn open_for_write(path: &Path, value: &str) -> Result<fs::File, SysctlError> {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|source| SysctlError::Write {
            path: path.display().to_string(),
            value: value.to_owned(),
            source,
        })
}

/// Writes `value` (plus a newline) into `file`, opened by [`open_for_write`] from `path`.
pub fn write_to(mut file: fs::File, path: &Path, value: &str) -> Result<(), SysctlError> {
    io::Write::write_all(&mut file, format!("{value}\n").as_bytes()).map_err(|source| {
        SysctlError::Write {
            path: path.display().to_string(),
            value: value.to_owned(),
            source,
        }
    })
}

impl SysctlError {
    /// The OS error behind a failed read or write.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::Read { source, .. } | Self::Write { source, .. } => Some(source),
            Self::Format(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Name mapping and round trips on a plain file.
    use super::*;

    #[test]
    fn maps_names_and_round_trips() {
        assert_eq!(
            path_of(Path::new("/proc"), "vm.swappiness"),
            PathBuf::from("/proc/sys/vm/swappiness")
        );
        let dir = std::env::temp_dir().join(format!("memtrace-sysctl-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("knob");
        assert!(write_value(&file, "1").is_err(), "must not create files");
        fs::write(&file, "60\n").expect("write");
        assert_eq!(read_int(&file).expect("reads"), 60);
        write_value(&file, "10").expect("writes");
        assert_eq!(read_int(&file).expect("reads"), 10);
        fs::write(&file, "x\n").expect("write");
        assert!(matches!(read_int(&file), Err(SysctlError::Format(_))));
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
