//! What the guard holds, for `top`'s held-trees pane: a [`GuardSource`] says which guards run and
//! which trees they (or a `memtrace run`) keep suspended, with why and since when. [`StateFiles`]
//! reads the state directory read-only: the `*-suspended.json` files (checked as the guard checks
//! them: root-owned, no symlink, see [`crate::guard::state`]) and the pids the guards write into
//! their scope locks; and it asks each guard's control socket there (`*.sock`,
//! [`crate::guard::control`]) for its level, waiting at most [`ASK_LIMIT`]. It never takes a
//! lock, writes or removes anything, so a guard starting meanwhile is never refused because of it.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use crate::guard::{
    control::{self, Request},
    state::{StateDir, StateFile},
    suspend::{How, Saved},
};

/// The longest `top` waits for a guard's answer on its control socket (a guard answers between
/// its rounds, every 100 ms when idle).
pub const ASK_LIMIT: Duration = Duration::from_millis(300);

/// A running guard's own account, from its control socket.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardLevel {
    /// The guard's pid.
    pub pid: u32,
    /// What it guards.
    pub scope: String,
    /// Its level (`ok`, `warn`, `reclaim`, `suspend`, `kill`).
    pub level: String,
    /// The scope's use, percent.
    pub used_percent: f64,
}

/// One suspended tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTree {
    /// The state file that records it (`guard-suspended.json`, `run-PID-suspended.json`, …).
    pub file: String,
    /// SIGSTOP or cgroup freeze.
    pub how: How,
    /// The tree's root.
    pub root_pid: u32,
    /// The root's command name.
    pub root_comm: String,
    /// Members, root included.
    pub members: usize,
    /// When it was suspended (ms since the Unix epoch), when the guard recorded it.
    pub since_unix_ms: Option<u64>,
    /// Why, when the guard recorded it.
    pub why: Option<String>,
}

/// One look at the guards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuardView {
    /// Pids of the running guards (from their scope locks).
    pub guards: Vec<u32>,
    /// The levels of the guards that answered on their control socket.
    pub levels: Vec<GuardLevel>,
    /// The trees held, in file order.
    pub held: Vec<HeldTree>,
    /// What could not be read (one line), e.g. the state directory without root.
    pub problem: Option<String>,
}

/// Something that can tell what the guards hold; the control interface of the guard can replace
/// [`StateFiles`] behind it.
pub trait GuardSource {
    /// One look; never fails: what cannot be read is said in [`GuardView::problem`].
    fn look(&mut self) -> GuardView;
}

/// The state directory, read-only.
#[derive(Debug)]
pub struct StateFiles {
    dir: PathBuf,
    proc_root: PathBuf,
}

impl StateFiles {
    /// Reads `dir` (the guard's state directory) and checks guard pids in /proc.
    pub fn new(dir: &Path) -> Self {
        Self::with_proc(dir, Path::new("/proc"))
    }

    fn with_proc(dir: &Path, proc_root: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            proc_root: proc_root.to_owned(),
        }
    }

    /// The pid written in a guard's scope lock, if that process is alive and is memtrace.
    fn guard_pid(&self, file: &StateFile) -> Option<u32> {
        let pid: u32 = file.read().ok()??.trim().parse().ok()?;
        let comm = std::fs::read_to_string(self.proc_root.join(format!("{pid}/comm"))).ok()?;
        comm.trim().starts_with("memtrace").then_some(pid)
    }
}

/// The level of the guard answering at `socket`; `None` when none answers within [`ASK_LIMIT`]
/// (a socket left by a guard that was killed, or not root).
fn ask_level(socket: &Path) -> Option<GuardLevel> {
    let reply = control::request_within(socket, &Request::Status, ASK_LIMIT).ok()?;
    let status = reply.status?;
    Some(GuardLevel {
        pid: status.pid,
        scope: status.scope,
        level: status.level,
        used_percent: status.used_percent,
    })
}

/// Whether `name` is a guard's scope lock (`guard-machine.lock`, `guard-cgroup….lock`), not the
/// lock of a state file (`….json.lock`).
fn is_scope_lock(name: &str) -> bool {
    name.starts_with("guard-") && name.ends_with(".lock") && !name.ends_with(".json.lock")
}

/// Whether `name` is a state file of a guard or a run.
fn is_state_file(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with("-suspended.json")
}

/// The trees a state file's text records; `Err` names what is wrong with it.
fn trees_of(file: &str, text: &str) -> Result<Vec<HeldTree>, String> {
    let saved: Saved =
        serde_json::from_str(text).map_err(|err| format!("{file} is unreadable: {err}"))?;
    Ok(saved
        .suspended
        .into_iter()
        .map(|record| HeldTree {
            file: file.to_owned(),
            root_pid: record.members.first().map_or(0, |m| m.pid),
            root_comm: record
                .members
                .first()
                .map_or_else(String::new, |m| m.comm.clone()),
            members: record.members.len(),
            how: record.how,
            since_unix_ms: record.since_unix_ms,
            why: record.why,
        })
        .collect())
}

impl GuardSource for StateFiles {
    fn look(&mut self) -> GuardView {
        let mut view = GuardView::default();
        let dir = match StateDir::open_existing(&self.dir) {
            Ok(Some(dir)) => dir,
            Ok(None) => return view,
            Err(err) => {
                view.problem = Some(format!("guard state: {err}"));
                return view;
            }
        };
        let mut names = match dir.names() {
            Ok(names) => names,
            Err(err) => {
                view.problem = Some(format!("guard state {}: {err}", self.dir.display()));
                return view;
            }
        };
        names.sort();
        for name in &names {
            let file = StateFile::new(&dir, name);
            if is_scope_lock(name) {
                view.guards.extend(self.guard_pid(&file));
            } else if name.ends_with(".sock") {
                view.levels.extend(ask_level(&self.dir.join(name)));
            } else if is_state_file(name) {
                match file.read() {
                    Ok(Some(text)) => match trees_of(name, &text) {
                        Ok(trees) => view.held.extend(trees),
                        Err(problem) => view.problem = Some(problem),
                    },
                    Ok(None) => {}
                    Err(err) => view.problem = Some(err.to_string()),
                }
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    //! The state directory read back: trees with why and since, guards by their live pid, files
    //! of other kinds ignored, and nothing changed.
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    #[test]
    fn names_are_told_apart() {
        assert!(is_scope_lock("guard-machine.lock"));
        assert!(is_scope_lock("guard-cgroup+sys+fs+cgroup+a.lock"));
        assert!(!is_scope_lock("guard-suspended.json.lock"));
        assert!(!is_scope_lock("run-12-suspended.json.lock"));
        assert!(is_state_file("guard-suspended.json"));
        assert!(is_state_file("run-12-suspended.json"));
        assert!(!is_state_file(".guard-suspended.json.0123.tmp"));
        assert!(!is_state_file("guard-suspended.json.lock"));
    }

    #[test]
    fn reads_trees_and_live_guards_without_changing_anything() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = tmp.path().join("state");
        StateDir::open(&state, true).expect("dir");
        write(
            &state,
            "guard-suspended.json",
            r#"{"version":2,"boot_id":"b","suspended":[
                {"how":"stop","members":[{"pid":300,"start_ticks":7,"comm":"trainer"},
                                          {"pid":301,"start_ticks":8,"comm":"loader"}],
                 "cgroup":null,"since_unix_ms":1700000000000,"why":"used 93 % ≥ 90 %"}]}"#,
        );
        // A file of an older guard: no why, no since.
        write(
            &state,
            "run-12-suspended.json",
            r#"{"version":2,"suspended":[{"how":"freeze","members":[{"pid":400,"start_ticks":1,"comm":"etl"}],"cgroup":"/sys/fs/cgroup/x"}]}"#,
        );
        // This test's own pid stands for a live guard; its comm is not memtrace's, so a fake
        // /proc says it is.
        let proc_root = tmp.path().join("proc");
        let me = std::process::id();
        std::fs::create_dir_all(proc_root.join(me.to_string())).expect("proc dir");
        std::fs::write(proc_root.join(format!("{me}/comm")), "memtrace\n").expect("comm");
        write(&state, "guard-machine.lock", &format!("{me}\n"));
        write(&state, "guard-cgroup+dead.lock", "999999999\n");
        write(&state, "guard-suspended.json.lock", &format!("{me}\n"));
        let before = {
            let mut names = std::fs::read_dir(&state)
                .expect("ls")
                .map(|e| e.expect("entry").file_name())
                .collect::<Vec<_>>();
            names.sort();
            names
        };

        let view = StateFiles::with_proc(&state, &proc_root).look();
        assert_eq!(view.problem, None);
        assert_eq!(view.guards, vec![me], "only the live guard's scope lock");
        assert_eq!(
            view.held,
            vec![
                HeldTree {
                    file: "guard-suspended.json".to_owned(),
                    how: How::Stop,
                    root_pid: 300,
                    root_comm: "trainer".to_owned(),
                    members: 2,
                    since_unix_ms: Some(1_700_000_000_000),
                    why: Some("used 93 % ≥ 90 %".to_owned()),
                },
                HeldTree {
                    file: "run-12-suspended.json".to_owned(),
                    how: How::Freeze,
                    root_pid: 400,
                    root_comm: "etl".to_owned(),
                    members: 1,
                    since_unix_ms: None,
                    why: None,
                },
            ]
        );
        let mut after = std::fs::read_dir(&state)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect::<Vec<_>>();
        after.sort();
        assert_eq!(before, after, "read-only: nothing created or removed");
    }

    #[test]
    fn missing_directory_is_quiet_and_bad_files_are_said() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = StateFiles::new(&tmp.path().join("none")).look();
        assert_eq!(missing, GuardView::default());

        let state = tmp.path().join("state");
        StateDir::open(&state, true).expect("dir");
        write(&state, "guard-suspended.json", "{not json");
        let view = StateFiles::new(&state).look();
        assert!(
            view.problem
                .as_deref()
                .is_some_and(|p| p.starts_with("guard-suspended.json is unreadable")),
            "{view:?}"
        );
        std::fs::set_permissions(
            state.join("guard-suspended.json"),
            std::fs::Permissions::from_mode(0o666),
        )
        .expect("chmod");
        let view = StateFiles::new(&state).look();
        assert!(
            view.problem
                .as_deref()
                .is_some_and(|p| p.contains("writable by group or others")),
            "a file others could have planted is refused: {view:?}"
        );
    }

    #[test]
    fn a_guard_answering_on_its_socket_gives_its_level_and_a_silent_one_none() {
        use crate::guard::control::{Reply, Server, Status};
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("guard-machine.sock");
        let mut server = Server::bind(&path, rustix::process::getuid()).expect("bind");
        let asker = std::thread::spawn({
            let path = path.clone();
            move || ask_level(&path)
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !asker.is_finished() && std::time::Instant::now() < deadline {
            server.serve(&mut |_| Reply {
                ok: true,
                message: String::new(),
                status: Some(Status {
                    pid: 4301,
                    scope: "machine".to_owned(),
                    level: "warn".to_owned(),
                    used_percent: 81.5,
                    ..Status::default()
                }),
            });
            std::thread::sleep(Duration::from_millis(10));
        }
        let level = asker.join().expect("joined").expect("an answer");
        assert_eq!((level.pid, level.level.as_str()), (4301, "warn"));
        // Nobody serves it now: the look gives up within the limit.
        let started = std::time::Instant::now();
        assert_eq!(ask_level(&path), None);
        assert!(started.elapsed() < ASK_LIMIT + Duration::from_millis(200));
        drop(server);
        assert_eq!(ask_level(&path), None, "no socket at all");
    }
}
