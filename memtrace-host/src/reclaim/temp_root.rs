//! Which directories may be temp roots (for `memtrace clean --temp` and the guard's
//! `actions.temp_dirs`), and opening one without following a symlink anywhere on its path.
//!
//! A root is resolved to its canonical path once, when it is given, and refused when it is `/`,
//! a system directory, anything inside a system tree, a parent of either, a home directory, a
//! parent of the current directory, not a directory, or itself a symlink (trailing slashes do
//! not make `lstat` follow it: they are stripped first). Later it is opened only through
//! [`open_root`]: one component at a time from `/`, each with `O_NOFOLLOW | O_DIRECTORY`, so a
//! directory on the path swapped for a symlink after the check is refused, never followed.
use std::{
    io,
    os::fd::OwnedFd,
    path::{Component, Path, PathBuf},
};

use rustix::{
    fs::{Mode, OFlags},
    io::Errno,
};

use super::ReclaimError;

/// Trees that never hold temp files: neither they nor anything below them is a temp root.
const SYSTEM_TREES: &[&str] = &[
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
    "/proc",
    "/sys",
    "/run",
    "/var/lib",
    "/var/log",
    "/var/spool",
    "/var/mail",
    "/var/backups",
];

/// System directories that are no temp root themselves, though directories below them may be
/// (`/var/tmp/frames`, `/dev/shm`).
const SYSTEM_DIRS: &[&str] = &[
    "/", "/dev", "/var", "/root", "/opt", "/srv", "/mnt", "/media",
];

/// The directory whose children are home directories (refused, like itself; `/home/u/cache`
/// is allowed).
const HOMES: &str = "/home";

/// How much of a protected directory is off limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// The directory and everything below it.
    Tree,
    /// The directory itself (and its parents).
    Dir,
    /// The directory and its children, the home directories.
    Homes,
}

/// A protected directory.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Protected {
    path: PathBuf,
    reach: Reach,
}

/// The protected directories as named and, where a name is a symlink on this machine (`/lib`
/// → `/usr/lib`, `/home` → `/data/home`), as resolved.
fn protected() -> Vec<Protected> {
    let named = SYSTEM_TREES
        .iter()
        .map(|p| (*p, Reach::Tree))
        .chain(SYSTEM_DIRS.iter().map(|p| (*p, Reach::Dir)))
        .chain([(HOMES, Reach::Homes)]);
    let mut list = Vec::new();
    for (path, reach) in named {
        let path = PathBuf::from(path);
        if let Ok(resolved) = std::fs::canonicalize(&path)
            && resolved != path
        {
            list.push(Protected {
                path: resolved,
                reach,
            });
        }
        list.push(Protected { path, reach });
    }
    list
}

/// Why `canonical` (absolute, symlinks resolved) must not be a temp root, if it must not.
fn refusal(canonical: &Path, protected: &[Protected], cwd: Option<&Path>) -> Option<String> {
    if canonical == Path::new("/") {
        return Some("is / (the whole system); refusing".to_owned());
    }
    for p in protected {
        let shown = p.path.display();
        if canonical == p.path {
            return Some(format!("is the system directory {shown}; refusing"));
        }
        if p.path.starts_with(canonical) {
            return Some(format!("contains the system directory {shown}; refusing"));
        }
        match p.reach {
            Reach::Tree if canonical.starts_with(&p.path) => {
                return Some(format!("is inside the system directory {shown}; refusing"));
            }
            Reach::Homes if canonical.parent() == Some(p.path.as_path()) => {
                return Some("is a home directory; refusing".to_owned());
            }
            Reach::Tree | Reach::Dir | Reach::Homes => {}
        }
    }
    if let Some(cwd) = cwd
        && cwd != canonical
        && cwd.starts_with(canonical)
    {
        return Some(format!(
            "contains the current directory {}; refusing",
            cwd.display()
        ));
    }
    None
}

/// Checks that `root` may be a temp root and returns its canonical path, the only form in
/// which it is used afterwards (see the module docs for what is refused).
pub fn check_temp_root(root: &Path) -> Result<PathBuf, ReclaimError> {
    check_with(root, &protected(), std::env::current_dir().ok().as_deref())
}

fn check_with(
    root: &Path,
    protected: &[Protected],
    cwd: Option<&Path>,
) -> Result<PathBuf, ReclaimError> {
    let refuse = |why: &str| ReclaimError::BadRoot {
        root: root.display().to_string(),
        why: why.to_owned(),
    };
    if root.as_os_str().is_empty() {
        return Err(refuse("is empty"));
    }
    let absolute = match (root.is_absolute(), cwd) {
        (true, _) => root.to_path_buf(),
        (false, Some(cwd)) => cwd.join(root),
        (false, None) => return Err(refuse("is relative and the current directory is unknown")),
    };
    // Collecting the components drops trailing slashes and `.`: `lstat("link/")` would follow
    // the link, `lstat("link")` sees it.
    let lexical: PathBuf = absolute.components().collect();
    if lexical
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(refuse("contains `..`; pass the directory itself"));
    }
    let unreadable = |source| ReclaimError::Root {
        root: root.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(&lexical).map_err(unreadable)?;
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symlink; pass the directory it points to"));
    }
    if !meta.is_dir() {
        return Err(refuse("is not a directory"));
    }
    let canonical = std::fs::canonicalize(&lexical).map_err(unreadable)?;
    match refusal(&canonical, protected, cwd) {
        Some(why) if canonical == lexical => Err(refuse(&why)),
        Some(why) => Err(refuse(&format!("(= {}) {why}", canonical.display()))),
        None => Ok(canonical),
    }
}

/// Opens the canonical `root` one component at a time from `/`, each with `O_NOFOLLOW |
/// O_DIRECTORY`: a component that is (or was swapped for) a symlink or a non-directory is an
/// error, never followed.
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    let not_canonical = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute canonical path",
        )
    };
    if !root.is_absolute() {
        return Err(not_canonical());
    }
    let mut dir = rustix::fs::open("/", dir_flags(), Mode::empty())?;
    for component in root.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => {
                dir = match rustix::fs::openat(&dir, name, dir_flags(), Mode::empty()) {
                    Ok(next) => next,
                    Err(Errno::LOOP | Errno::NOTDIR) => {
                        return Err(io::Error::other(format!(
                            "{} is now a symlink or not a directory; not followed",
                            name.display()
                        )));
                    }
                    Err(errno) => return Err(errno.into()),
                }
            }
            _ => return Err(not_canonical()),
        }
    }
    Ok(dir)
}

/// Flags for every directory the temp walk opens: read-only, never through a symlink.
pub(crate) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

#[cfg(test)]
mod tests {
    //! Each refusal on a fake tree under a temp dir (with its own protected list and current
    //! directory), then the real system directories.
    use std::{fs, os::unix::fs::symlink};

    use super::*;

    /// `tree/sys` plays a system tree, `tree/data` a system directory, `tree/home` the homes.
    struct Fake {
        _dir: tempfile::TempDir,
        base: PathBuf,
        protected: Vec<Protected>,
    }

    fn fake() -> Fake {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = fs::canonicalize(dir.path()).expect("canonical");
        for sub in [
            "sys/conf",
            "data/cache",
            "home/u/cache",
            "work/a/b",
            "outside",
        ] {
            fs::create_dir_all(base.join(sub)).expect("mkdir");
        }
        let protected = vec![
            Protected {
                path: base.join("sys"),
                reach: Reach::Tree,
            },
            Protected {
                path: base.join("data"),
                reach: Reach::Dir,
            },
            Protected {
                path: base.join("home"),
                reach: Reach::Homes,
            },
        ];
        Fake {
            _dir: dir,
            base,
            protected,
        }
    }

    impl Fake {
        fn check(&self, root: &Path) -> Result<PathBuf, String> {
            let cwd = self.base.join("work/a/b");
            check_with(root, &self.protected, Some(&cwd)).map_err(|e| e.to_string())
        }
    }

    #[track_caller]
    fn refused(result: Result<PathBuf, String>, needle: &str) {
        match result {
            Ok(path) => panic!("accepted {}, expected {needle:?}", path.display()),
            Err(err) => assert!(err.contains(needle), "{err:?} lacks {needle:?}"),
        }
    }

    #[test]
    fn symlinks_are_refused_with_or_without_trailing_slashes() {
        let f = fake();
        let link = f.base.join("link");
        symlink(f.base.join("outside"), &link).expect("symlink");
        for given in ["link", "link/", "link//", "link/."] {
            refused(f.check(&f.base.join(given)), "is a symlink");
        }
        // A symlink earlier on the path is resolved, and the result judged.
        let to_sys = f.base.join("to-sys");
        symlink(f.base.join("sys"), &to_sys).expect("symlink");
        refused(
            f.check(&to_sys.join("conf/")),
            "inside the system directory",
        );
    }

    #[test]
    fn parents_dots_and_non_directories_are_refused() {
        let f = fake();
        refused(f.check(&f.base.join("outside/..")), "`..`");
        refused(f.check(&f.base.join("outside/../sys")), "`..`");
        refused(f.check(Path::new("/tmp/..")), "`..`");
        fs::write(f.base.join("file"), b"x").expect("write");
        refused(f.check(&f.base.join("file")), "not a directory");
        refused(f.check(&f.base.join("missing")), "No such file");
        refused(f.check(Path::new("")), "is empty");
    }

    #[test]
    fn system_directories_their_trees_and_parents_are_refused() {
        let f = fake();
        refused(f.check(&f.base.join("sys")), "is the system directory");
        refused(
            f.check(&f.base.join("sys/conf")),
            "inside the system directory",
        );
        refused(f.check(&f.base.join("data")), "is the system directory");
        refused(f.check(&f.base), "contains the system directory");
        refused(f.check(&f.base.join("home/u")), "home directory");
        // Below a system directory (not a tree), and below a home: allowed.
        let cache = f.base.join("data/cache");
        assert_eq!(f.check(&cache), Ok(cache.clone()));
        let home_cache = f.base.join("home/u/cache/");
        assert_eq!(f.check(&home_cache), Ok(f.base.join("home/u/cache")));
    }

    #[test]
    fn parents_of_the_current_directory_are_refused() {
        let f = fake();
        refused(
            f.check(&f.base.join("work/a")),
            "contains the current directory",
        );
        refused(
            f.check(&f.base.join("work")),
            "contains the current directory",
        );
        // The current directory itself, given relative: allowed, as its canonical path.
        assert_eq!(f.check(Path::new(".")), Ok(f.base.join("work/a/b")));
        refused(f.check(Path::new("..")), "`..`");
    }

    #[test]
    fn real_system_directories_are_refused() {
        for root in [
            "/",
            "/etc",
            "/etc/",
            "/usr/lib",
            "/var",
            "/proc/sys",
            "/home",
            "/run",
        ] {
            let result = check_temp_root(Path::new(root)).map_err(|e| e.to_string());
            refused(result, "refusing");
        }
        // /tmp itself is the usual temp root.
        assert!(check_temp_root(Path::new("/tmp")).is_ok());
    }

    #[test]
    fn open_root_refuses_a_symlink_anywhere_on_the_path() {
        let f = fake();
        let root = f.base.join("work/a");
        assert!(open_root(&root).is_ok());
        // `work` swapped for a symlink to a directory that has `a` too.
        fs::create_dir_all(f.base.join("outside/a")).expect("mkdir");
        fs::rename(f.base.join("work"), f.base.join("work-moved")).expect("rename");
        symlink(f.base.join("outside"), f.base.join("work")).expect("symlink");
        let err = open_root(&root).expect_err("a symlink on the path");
        assert!(err.to_string().contains("not followed"), "{err}");
        assert!(open_root(Path::new("relative")).is_err());
    }
}
