//! The one `/etc/fstab` line a persistent swap file needs: added idempotently, removed exactly,
//! other lines (comments, spacing, order) untouched. Files are replaced atomically (write a
//! sibling, fsync, rename) keeping their permissions.
use std::{
    fs, io,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use super::active::unescape_octal;

/// fstab could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct FstabError {
    what: &'static str,
    path: String,
    source: io::Error,
}

/// The default fstab.
pub const DEFAULT_FSTAB: &str = "/etc/fstab";

/// The line memtrace writes for a swap file.
pub fn line_for(swapfile: &Path) -> String {
    format!(
        "{} none swap sw 0 0",
        escape(&swapfile.display().to_string())
    )
}

/// fstab's escapes: space, tab, newline and backslash as octal.
fn escape(field: &str) -> String {
    field
        .chars()
        .map(|c| match c {
            ' ' => "\\040".to_owned(),
            '\t' => "\\011".to_owned(),
            '\n' => "\\012".to_owned(),
            '\\' => "\\134".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Whether `line` is a swap entry for `swapfile` (first field, unescaped, equal; type `swap`).
fn is_entry_for(line: &str, swapfile: &Path) -> bool {
    let mut fields = line.split_ascii_whitespace();
    let (Some(spec), Some(_), Some(kind)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    !spec.starts_with('#') && kind == "swap" && Path::new(&unescape_octal(spec)) == swapfile
}

/// Whether `text` has a swap entry for `swapfile`.
pub fn has_entry(text: &str, swapfile: &Path) -> bool {
    text.lines().any(|line| is_entry_for(line, swapfile))
}

/// Reads `fstab`; a missing file reads as empty.
pub fn read(fstab: &Path) -> Result<String, FstabError> {
    match fs::read_to_string(fstab) {
        Ok(text) => Ok(text),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(FstabError {
            what: "reading",
            path: fstab.display().to_string(),
            source,
        }),
    }
}

/// Adds the swap line for `swapfile` unless an entry for it exists; returns whether it added.
pub fn ensure_entry(fstab: &Path, swapfile: &Path) -> Result<bool, FstabError> {
    let text = read(fstab)?;
    if has_entry(&text, swapfile) {
        return Ok(false);
    }
    let mut new = text;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&line_for(swapfile));
    new.push('\n');
    replace(fstab, &new)?;
    Ok(true)
}

/// Removes every swap entry for `swapfile`; returns how many lines went.
pub fn remove_entry(fstab: &Path, swapfile: &Path) -> Result<usize, FstabError> {
    let text = read(fstab)?;
    let removed = text
        .lines()
        .filter(|line| is_entry_for(line, swapfile))
        .count();
    if removed == 0 {
        return Ok(0);
    }
    // split_inclusive keeps every surviving line byte for byte, newline or not.
    let new: String = text
        .split_inclusive('\n')
        .filter(|line| !is_entry_for(line, swapfile))
        .collect();
    replace(fstab, &new)?;
    Ok(removed)
}

/// Writes `text` to a sibling temporary file, fsyncs it and renames it over `fstab`, keeping the
/// old file's permissions (0644 for a new one).
fn replace(fstab: &Path, text: &str) -> Result<(), FstabError> {
    let err = |what: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| FstabError { what, path, source }
    };
    let mode = fs::metadata(fstab).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let mut tmp_name = fstab.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".memtrace-tmp");
    let tmp: PathBuf = fstab.with_file_name(tmp_name);
    let written = fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()
    });
    if let Err(source) = written {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
        return Err(err("writing", &tmp)(source));
    }
    fs::rename(&tmp, fstab).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        err("replacing", fstab)(source)
    })
}

#[cfg(test)]
mod tests {
    //! Idempotent add, exact remove, escaping, on a temporary fstab.
    use super::*;

    fn temp_fstab(name: &str, content: &str) -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("memtrace-fstab-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let fstab = dir.join("fstab");
        fs::write(&fstab, content).expect("write");
        (dir, fstab)
    }

    const BASE: &str = "# /etc/fstab\nUUID=abc / ext4 defaults 0 1\n#/swapfile none swap sw 0 0\n";

    #[test]
    fn add_is_idempotent_and_remove_is_exact() {
        let (dir, fstab) = temp_fstab("idem", BASE);
        let swap = Path::new("/swapfile");
        assert!(ensure_entry(&fstab, swap).expect("adds"));
        assert!(!ensure_entry(&fstab, swap).expect("no-op"));
        let text = fs::read_to_string(&fstab).expect("read");
        assert_eq!(text, format!("{BASE}/swapfile none swap sw 0 0\n"));
        assert_eq!(remove_entry(&fstab, swap).expect("removes"), 1);
        assert_eq!(
            fs::read_to_string(&fstab).expect("read"),
            BASE,
            "comments survive"
        );
        assert_eq!(remove_entry(&fstab, swap).expect("no-op"), 0);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn recognises_existing_entries_and_escapes() {
        let (dir, fstab) = temp_fstab("esc", "UUID=abc / ext4 defaults 0 1");
        assert!(ensure_entry(&fstab, Path::new("/var/my swap")).expect("adds"));
        let text = fs::read_to_string(&fstab).expect("read");
        assert_eq!(
            text,
            "UUID=abc / ext4 defaults 0 1\n/var/my\\040swap none swap sw 0 0\n"
        );
        assert!(has_entry(&text, Path::new("/var/my swap")));
        assert!(has_entry(
            "/swapfile\tnone  swap defaults 0 0\n",
            Path::new("/swapfile")
        ));
        assert!(!has_entry(
            "/swapfile /mnt ext4 defaults 0 0\n",
            Path::new("/swapfile")
        ));
        assert!(!has_entry(
            "/swapfile2 none swap sw 0 0\n",
            Path::new("/swapfile")
        ));
        assert_eq!(
            remove_entry(&fstab, Path::new("/var/my swap")).expect("removes"),
            1
        );
        let missing = dir.join("absent");
        assert!(ensure_entry(&missing, Path::new("/s")).expect("creates"));
        assert_eq!(
            fs::read_to_string(&missing).expect("read"),
            "/s none swap sw 0 0\n"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
