//! Where a held tree is frozen instead of stopped with SIGSTOP. A frozen tree is held by the
//! kernel without a signal, so the interactive shell that runs it in the foreground notices
//! nothing: it prints no "Stopped", keeps the job in the foreground, and Ctrl-C reaches it once
//! it is thawed. In order of preference ([`place`]):
//!
//! 1. a cgroup of the tree's own — its v2 cgroup or its v1 freezer cgroup holding nothing but
//!    the tree (a `memtrace run` pipeline, a systemd unit, a container) — frozen as it is;
//! 2. else a new cgroup `memtrace-held-GUARDPID-ROOTPID` made *below* the cgroup the members
//!    share, the members moved into it and it frozen; thawing moves them back and removes it.
//!    Below, so the unit, session or container that holds them still does: systemd still finds
//!    an ssh session's pipeline in its `session-N.scope`, and a container's limits still apply.
//!    - With the v1 freezer mounted (hybrid hosts), in the v1 freezer hierarchy: that
//!      controller does nothing but freeze, so the move changes nothing else.
//!    - Else in the v2 hierarchy, only where the shared cgroup enables no controller for its
//!      children (`cgroup.subtree_control` empty — a session scope, a service — and not a
//!      threaded cgroup): the new child then has no controller of its own, so the members'
//!      memory stays charged to, accounted in and limited by the same cgroups as before, and
//!      only freezing differs ([`v2_move_refused`]);
//! 3. else SIGSTOP, and [`place`] says why (logged with the decision): no cgroup filesystem
//!    that can be written (a container's read-only `/sys/fs/cgroup`), members in different
//!    cgroups, or a shared v2 cgroup whose children would get controllers of their own.
//!
//! Moving a process between cgroups waits for an RCU grace period (about 15 ms on our hosts),
//! far longer than the freeze itself (0.1 ms). So the guard moves the likely victim ahead, near
//! warn, into a thawed cgroup of case 2 ([`stage`]): it runs on as before, and holding it is one
//! write ([`adopt`]). A staged tree the guard did not hold is moved back ([`unstage`]), also
//! after a crash ([`recover_staged`]).
use std::path::{Path, PathBuf};

use super::{
    suspend::{HeldRecord, How},
    victim::Candidate,
};
use crate::host::{
    cgroup,
    freezer::{self, Freezer, Kind},
};

/// Name prefix of the freezer cgroups the guard makes (see the module doc).
pub const HELD_PREFIX: &str = "memtrace-held";

/// How many times the members' new children are looked for and moved after the first move.
const MOVE_ROUNDS: usize = 3;

/// A cgroup the tree will be frozen in.
#[derive(Debug)]
pub struct Placed {
    /// How: [`How::Freeze`] (v2) or [`How::FreezerV1`].
    pub how: How,
    /// The cgroup.
    pub cgroup: PathBuf,
    /// Where the members were moved from, when the guard moved them (see the module doc).
    pub moved_from: Option<PathBuf>,
    /// Whether they were moved there ahead, when the tree was staged ([`stage`]).
    pub staged: bool,
}

fn how_of(kind: Kind) -> How {
    match kind {
        Kind::V2 => How::Freeze,
        Kind::V1 => How::FreezerV1,
    }
}

/// The kind of freezer a record's `how` names (`None` for SIGSTOP).
pub fn kind_of(how: &How) -> Option<Kind> {
    match how {
        How::Stop => None,
        How::Freeze => Some(Kind::V2),
        How::FreezerV1 => Some(Kind::V1),
    }
}

/// Where `victim` can be frozen (see the module doc), or why it can only be stopped with
/// SIGSTOP. `guard_pid` names the cgroup the guard makes.
pub fn place(proc_root: &Path, victim: &Candidate, guard_pid: u32) -> Result<Placed, String> {
    let Some(root) = victim.members.first() else {
        return Err("the tree has no member".to_owned());
    };
    let members: Vec<u32> = victim.members.iter().map(|m| m.pid).collect();
    match own_place(proc_root, root.pid, &members) {
        Some(own) => Ok(own),
        None => move_place(proc_root, root.pid, &members, guard_pid),
    }
}

/// Moves `victim` ahead into a thawed cgroup of its own, so that holding it later is one write
/// (see the module doc): `Ok(None)` when it has a freezer cgroup of its own already (holding it
/// is one write as it is).
pub fn stage(
    proc_root: &Path,
    victim: &Candidate,
    guard_pid: u32,
) -> Result<Option<Placed>, String> {
    let placed = place(proc_root, victim, guard_pid)?;
    // A cgroup of its own is frozen as it is: nothing was moved.
    Ok(placed.moved_from.is_some().then_some(Placed {
        staged: true,
        ..placed
    }))
}

/// Makes the cgroup a staged tree was moved into ready to be frozen: moves the members of
/// `victim` that are not in it yet (a member that joined the tree from elsewhere since; the
/// children forked in it are there already). On failure the caller moves the tree back
/// ([`unstage`]) and places it afresh.
pub fn adopt(proc_root: &Path, placed: &Placed, victim: &Candidate) -> Result<(), String> {
    let inside = cgroup::procs_of(&placed.cgroup)
        .map_err(|err| format!("reading {}: {err}", placed.cgroup.display()))?;
    let missing: Vec<u32> = victim
        .members
        .iter()
        .map(|m| m.pid)
        .filter(|pid| !inside.contains(pid))
        .collect();
    if missing.is_empty() {
        return if inside.is_empty() {
            Err("every member exited".to_owned())
        } else {
            Ok(())
        };
    }
    move_tree(proc_root, &placed.cgroup, &missing)
}

/// The freezer cgroup of the tree's own (its root `root`), if it has one holding nothing but
/// its `members`.
fn own_place(proc_root: &Path, root: u32, members: &[u32]) -> Option<Placed> {
    freezer::own_freezer(proc_root, root)
        .into_iter()
        .find(|own| {
            let pids = own.pids().unwrap_or_default();
            !pids.is_empty() && pids.iter().all(|pid| members.contains(pid))
        })
        .map(|own| Placed {
            how: how_of(own.kind()),
            cgroup: own.path().to_owned(),
            moved_from: None,
            staged: false,
        })
}

/// A new cgroup `memtrace-held-GUARDPID-ROOTPID` below the cgroup the tree's `members` share,
/// with the members moved into it (thawed).
fn move_place(
    proc_root: &Path,
    root: u32,
    members: &[u32],
    guard_pid: u32,
) -> Result<Placed, String> {
    let (kind, origin) = shared_cgroup(proc_root, members)?;
    let name = format!("{HELD_PREFIX}-{guard_pid}-{root}");
    let dir = origin.join(&name);
    if let Err(err) = std::fs::create_dir(&dir) {
        return Err(format!("creating {}: {err}", dir.display()));
    }
    let moved = move_tree(proc_root, &dir, members);
    let opened = Freezer::open(proc_root, &dir, kind);
    match (moved, opened) {
        (Ok(()), Ok(opened)) if opened.freezable() => Ok(Placed {
            how: how_of(kind),
            cgroup: dir,
            moved_from: Some(origin),
            staged: false,
        }),
        (moved, opened) => {
            let why = match (moved, opened) {
                (Err(err), _) => err,
                (_, Err(err)) => err.to_string(),
                _ => format!("{} cannot be written", dir.display()),
            };
            move_back(&dir, &origin);
            Err(format!("moving it into a freezer cgroup failed: {why}"))
        }
    }
}

/// The cgroup every member lies in, which a new child for them is made below (see the module
/// doc): in the v1 freezer hierarchy where it is mounted, else in the v2 one; or why there is
/// none.
fn shared_cgroup(proc_root: &Path, members: &[u32]) -> Result<(Kind, PathBuf), String> {
    // Each member's cgroup, read once.
    let (kind, origins): (Kind, Vec<Option<PathBuf>>) = match freezer::v1_freezer_mount(proc_root) {
        // The root of the hierarchy (or a container's) when the process has none below it.
        Some(mount) => (
            Kind::V1,
            members
                .iter()
                .map(|&pid| {
                    Some(freezer::v1_freezer_of(proc_root, pid).unwrap_or_else(|| mount.clone()))
                })
                .collect(),
        ),
        None if cgroup::v2_mount(proc_root).is_some() => (
            Kind::V2,
            members
                .iter()
                .map(|&pid| cgroup::v2_dir_of(proc_root, pid))
                .collect(),
        ),
        None => {
            return Err(
                "the tree has no cgroup of its own and no cgroup hierarchy is \
                        mounted to move it into"
                    .to_owned(),
            );
        }
    };
    let root = members.first().copied().unwrap_or_default();
    let Some(Some(origin)) = origins.first().cloned() else {
        return Err(format!("the cgroup of {root} could not be read"));
    };
    if let Some(other) = origins.iter().find(|o| o.as_ref() != Some(&origin)) {
        let theirs = other
            .as_ref()
            .map_or("?".to_owned(), |p| p.display().to_string());
        return Err(format!(
            "its members are in different cgroups ({} and {theirs})",
            origin.display(),
        ));
    }
    if kind == Kind::V2 {
        let read = |file: &str| std::fs::read_to_string(origin.join(file)).ok();
        let subtree = read("cgroup.subtree_control").unwrap_or_default();
        if let Some(why) = v2_move_refused(read("cgroup.type").as_deref(), &subtree) {
            return Err(format!(
                "it shares the v2 cgroup {} and {why}",
                origin.display()
            ));
        }
    }
    Ok((kind, origin))
}

/// Why members of a v2 cgroup whose `cgroup.type` reads `cgroup_type` (`None`: the file is
/// absent, as at the root of the hierarchy) and whose `cgroup.subtree_control` reads
/// `subtree_control` must not be moved into a new child of it; `None` when the child would
/// differ from it in freezing only (see the module doc).
pub fn v2_move_refused(cgroup_type: Option<&str>, subtree_control: &str) -> Option<String> {
    let cgroup_type = cgroup_type.map_or("domain", str::trim);
    if cgroup_type != "domain" {
        return Some(format!(
            "it is a {cgroup_type} cgroup (a child of it would be threaded)"
        ));
    }
    let controllers = subtree_control.split_whitespace().collect::<Vec<_>>();
    if !controllers.is_empty() {
        return Some(format!(
            "a new child of it would get controllers of its own ({}): its memory would be \
             accounted apart",
            controllers.join(" ")
        ));
    }
    None
}

/// Moves `members` into `dir`, then (a few rounds) the children they forked meanwhile.
fn move_tree(proc_root: &Path, dir: &Path, members: &[u32]) -> Result<(), String> {
    let mut moved = Vec::new();
    let mut todo = members.to_vec();
    for _ in 0..=MOVE_ROUNDS {
        for pid in std::mem::take(&mut todo) {
            match freezer::move_into(dir, pid) {
                Ok(()) => moved.push(pid),
                // It exited since the sample: nothing to hold.
                Err(err) if err.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {}
                Err(err) => return Err(format!("moving {pid}: {err}")),
            }
        }
        todo = moved
            .iter()
            .flat_map(|&pid| children_of(proc_root, pid))
            .filter(|child| !moved.contains(child))
            .collect();
        if todo.is_empty() {
            break;
        }
    }
    if moved.is_empty() {
        return Err("every member exited".to_owned());
    }
    Ok(())
}

/// The children of every thread of `pid` (`/proc/PID/task/*/children`).
fn children_of(proc_root: &Path, pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(proc_root.join(pid.to_string()).join("task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_ascii_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Moves whatever is in `dir` back to `origin` and removes `dir` (a few tries: the kernel
/// refuses while a task is still on its way out).
fn move_back(dir: &Path, origin: &Path) -> Option<String> {
    for pid in cgroup::procs_of(dir).unwrap_or_default() {
        let _ = freezer::move_into(origin, pid);
    }
    for _ in 0..20 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return None,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    Some(format!("could not remove {}", dir.display()))
}

/// Thaws a record's cgroup and, when the guard moved the tree there, moves it back and removes
/// the cgroup; returns a log line (none when the cgroup is gone, its tree having exited).
pub fn thaw(proc_root: &Path, record: &HeldRecord) -> Option<String> {
    let (Some(kind), Some(cgroup)) = (kind_of(&record.how), &record.cgroup) else {
        return None;
    };
    let line = match Freezer::open(proc_root, cgroup, kind).and_then(|dir| dir.set_frozen(false)) {
        Ok(()) => Some(format!("thawed cgroup {}", cgroup.display())),
        Err(err) if err.is_gone() => None,
        Err(err) => Some(format!("thawing {}: {err}", cgroup.display())),
    };
    match &record.moved_from {
        Some(origin) if cgroup.exists() => match move_back(cgroup, origin) {
            Some(err) => Some(format!("{}; {err}", line.unwrap_or_default())),
            None => line.map(|l| format!("{l} (moved back to {})", origin.display())),
        },
        _ => line,
    }
}

/// Moves a staged tree ([`stage`]) back where it was and removes its cgroup; returns a log
/// line (none when the record names no move).
pub fn unstage(record: &HeldRecord) -> Option<String> {
    let (Some(cgroup), Some(origin)) = (&record.cgroup, &record.moved_from) else {
        return None;
    };
    let root = record
        .members
        .first()
        .map_or_else(|| "?".to_owned(), |m| format!("{} ({})", m.pid, m.comm));
    Some(move_back_staged(cgroup, origin, &root))
}

/// Moves what is in the staged cgroup `cgroup` back to `origin` and removes it; a log line
/// naming the tree as `what`.
pub fn move_back_staged(cgroup: &Path, origin: &Path, what: &str) -> String {
    match move_back(cgroup, origin) {
        Some(err) => format!("moving the staged tree {what} back: {err}"),
        None => format!(
            "moved the staged tree {what} back from {} to {}",
            cgroup.display(),
            origin.display()
        ),
    }
}

/// Why a state file's staged record must not be acted on (`None`: it may be moved back): its
/// cgroup must be one the guard makes (named `memtrace-held-…`, a child of where the tree was
/// moved from), so that moving it back only moves the processes one level up.
pub fn staged_claim_refused(record: &HeldRecord) -> Option<String> {
    let (Some(cgroup), Some(origin)) = (&record.cgroup, &record.moved_from) else {
        return Some("a staged record without a cgroup and its origin".to_owned());
    };
    let named = cgroup
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(&format!("{HELD_PREFIX}-")));
    if !named || cgroup.parent() != Some(origin.as_path()) {
        return Some(format!(
            "{} is not a memtrace cgroup made below {}",
            cgroup.display(),
            origin.display()
        ));
    }
    None
}

/// Moves back a tree a dead guard had staged (its state file's record), after checking the
/// claim ([`staged_claim_refused`]) and that the cgroup is a real one and not frozen; returns
/// a log line (none when the cgroup is gone). A dry run only says what it would do.
pub fn recover_staged(proc_root: &Path, record: &HeldRecord, dry_run: bool) -> Option<String> {
    if let Some(why) = staged_claim_refused(record) {
        return Some(format!("not moving a staged tree back: {why}"));
    }
    let (kind, cgroup) = (kind_of(&record.how)?, record.cgroup.as_deref()?);
    let shown = cgroup.display();
    match Freezer::open(proc_root, cgroup, kind).and_then(|dir| dir.frozen()) {
        Err(err) if err.is_gone() => None,
        Err(err) => Some(format!("not moving the tree staged in {shown} back: {err}")),
        Ok(true) => Some(format!(
            "not moving the tree staged in {shown} back: the cgroup is frozen"
        )),
        Ok(false) if dry_run => Some(format!("would move the tree staged in {shown} back")),
        Ok(false) => unstage(record),
    }
}

/// Removes the empty freezer cgroups that dead guards made (see [`freezer::remove_leftovers`]),
/// below the v1 freezer's root; returns log lines. (A v2 one lies below whichever cgroup its
/// tree shared; the state file names it, and recovery removes it after moving the tree back.)
pub fn remove_leftovers(proc_root: &Path) -> Vec<String> {
    let Some(mount) = freezer::v1_freezer_mount(proc_root) else {
        return Vec::new();
    };
    freezer::remove_leftovers(proc_root, &mount, HELD_PREFIX)
        .into_iter()
        .map(|dir| format!("removed the empty leftover cgroup {}", dir.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    //! Which shared v2 cgroups a tree is moved below.
    use super::*;

    #[test]
    fn a_staged_record_names_a_memtrace_cgroup_right_below_its_origin() {
        use crate::guard::suspend::How;
        let record = |cgroup: Option<&str>, from: Option<&str>| HeldRecord {
            how: How::FreezerV1,
            members: Vec::new(),
            cgroup: cgroup.map(PathBuf::from),
            moved_from: from.map(PathBuf::from),
            since_unix_ms: None,
            why: None,
        };
        let f = "/sys/fs/cgroup/freezer";
        assert_eq!(
            staged_claim_refused(&record(Some(&format!("{f}/memtrace-held-7-9")), Some(f))),
            None
        );
        for (cgroup, from) in [
            (Some(format!("{f}/memtrace-held-7-9")), None),
            (None, Some(f)),
            // Not a name the guard gives.
            (Some(format!("{f}/system.slice")), Some(f)),
            (Some(format!("{f}/memtrace-heldx")), Some(f)),
            // Not right below where the tree came from.
            (Some(format!("{f}/a/memtrace-held-7-9")), Some(f)),
            (Some(format!("{f}/memtrace-held-7-9")), Some("/")),
        ] {
            assert!(
                staged_claim_refused(&record(cgroup.as_deref(), from)).is_some(),
                "{cgroup:?} from {from:?}"
            );
        }
    }

    #[test]
    fn a_tree_is_moved_below_a_v2_cgroup_only_where_its_child_would_get_no_controller() {
        // A session scope or a service: no controller for children.
        assert_eq!(v2_move_refused(Some("domain\n"), "\n"), None);
        // The root of a hierarchy without controllers (a hybrid host's unified mount).
        assert_eq!(v2_move_refused(None, ""), None);
        let root = v2_move_refused(None, "cpuset cpu io memory pids\n").expect("refused");
        assert!(
            root.contains("controllers of its own (cpuset cpu io memory pids)"),
            "{root}"
        );
        let threaded = v2_move_refused(Some("threaded\n"), "").expect("refused");
        assert!(threaded.contains("threaded cgroup"), "{threaded}");
        assert!(v2_move_refused(Some("domain threaded"), "").is_some());
        assert!(v2_move_refused(Some("domain invalid"), "").is_some());
    }
}
