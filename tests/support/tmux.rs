//! A terminal for tests driven the way a person drives one (the interactive `memtrace top`, a
//! job in the foreground of an interactive shell under the guard): a private tmux server (its
//! own socket, so no one else's sessions are touched) with one detached session of a fixed size
//! running a command; keys go in with `send-keys`, the screen comes back with `capture-pane -p`.
//! The server (and with it what runs in the pane) is ended on drop.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use memtrace_testkit::cgroup::TestCgroup;

use super::output_within;

/// A detached tmux session on a private server.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (run by `sh -c`) in a `width`×`height` session named `name`.
    pub fn start(name: &str, width: u16, height: u16, command: &str) -> Self {
        let tmux = Self {
            socket: format!("memtrace-test-{name}-{}", std::process::id()),
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", name, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .status()
            .expect("tmux (cargo xtask test installs it)");
        assert!(status.success(), "tmux new-session: {status}");
        tmux
    }

    /// An interactive bash (no rc files) in a `width`×`height` session named `name`, its server
    /// started inside `group` (the client that forks it is moved there first); the server and
    /// the pane's shell are tracked by the group. Returns the session, the server's pid and the
    /// shell's.
    pub fn start_shell_in(
        group: &mut TestCgroup,
        name: &str,
        width: u16,
        height: u16,
    ) -> (Self, u32, u32) {
        let tmux = Self {
            socket: format!("memtrace-test-{name}-{}", std::process::id()),
        };
        let (width, height) = (width.to_string(), height.to_string());
        let mut start = group.command(
            "tmux",
            &[
                "-L",
                &tmux.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                &width,
                "-y",
                &height,
                "bash --norc --noprofile -i",
            ],
        );
        let started = output_within(start.env("TERM", "xterm"), Duration::from_secs(10));
        assert!(
            started.status.success(),
            "starting tmux (tmux is needed by this test): {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let pids = tmux.run(&["display-message", "-p", "#{pid} #{pane_pid}"]);
        let (server, shell) = pids
            .split_once(' ')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .unwrap_or_else(|| panic!("tmux server and pane pids: {pids:?}"));
        group.track(shell);
        group.track(server);
        (tmux, server, shell)
    }

    /// Runs one tmux command on this server (within 10 s); its trimmed output. Panics if it
    /// fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = output_within(self.command().args(args), Duration::from_secs(10));
        assert!(
            out.status.success(),
            "tmux {args:?} (tmux is needed by this test): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        // A terminal type tmux and crossterm both know and UTF-8 (the view draws `▼`, `├─`),
        // whatever the test's environment says.
        cmd.args(["-L", &self.socket, "-u"])
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8");
        cmd
    }

    /// Sends `keys` as tmux key names (`q`, `Enter`, `Escape`, `C-c`) or, with `literal`, as text.
    pub fn send(&self, keys: &str, literal: bool) {
        let mut cmd = self.command();
        cmd.arg("send-keys");
        if literal {
            cmd.arg("-l");
        }
        let status = cmd.arg(keys).status().expect("tmux send-keys");
        assert!(status.success(), "tmux send-keys {keys:?}: {status}");
    }

    /// The screen as text, one line per row.
    pub fn screen(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pid of the pane's process (the `sh -c` running the command).
    pub fn pane_pid(&self) -> u32 {
        let out = self
            .command()
            .args(["display-message", "-p", "#{pane_pid}"])
            .output()
            .expect("tmux display-message");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a pane pid")
    }

    /// The pane's terminal device (`/dev/pts/N`).
    pub fn pane_tty(&self) -> String {
        let out = self
            .command()
            .args(["display-message", "-p", "#{pane_tty}"])
            .output()
            .expect("tmux display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Appends everything the pane's program writes to its terminal from now on to `path`.
    pub fn record_output(&self, path: &std::path::Path) {
        let status = self
            .command()
            .args(["pipe-pane", "-o"])
            .arg(format!("cat >> '{}'", path.display()))
            .status()
            .expect("tmux pipe-pane");
        assert!(status.success(), "tmux pipe-pane: {status}");
    }

    /// Resizes the session's window, as a person resizing their terminal.
    pub fn resize(&self, width: u16, height: u16) {
        let status = self
            .command()
            .args(["resize-window", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .status()
            .expect("tmux resize-window");
        assert!(status.success(), "tmux resize-window: {status}");
    }

    /// Waits until `check` accepts the screen; panics with the last screen after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "waited {limit:?} for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ends this private server only, and the pane's processes with it (SIGHUP).
        let _ = self.command().arg("kill-server").status();
    }
}
