//! Reads a run's guest journal lines (`journalctl -o short-unix`, so every line starts with
//! the guest's epoch time) into the actions taken: kernel OOM kills, earlyoom's signals,
//! memtrace's suspensions, kills and resumptions, each with the command name it hit. The kernel's
//! OOM kills are taken from the serial console instead (see [`console_kills`]): journald itself
//! can be killed or stall when the kernel alone faces the hog.

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The kernel's OOM killer.
    Kernel,
    /// earlyoom.
    Earlyoom,
    /// memtrace guard.
    Memtrace,
}

/// One action on a process.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Guest epoch seconds.
    pub at: f64,
    /// Who acted.
    pub actor: Actor,
    /// `kill`, `suspend`, `SIGTERM`, … as logged.
    pub what: String,
    /// The command name of the process (tree) acted on.
    pub comm: String,
}

impl Action {
    /// Whether this acted on a process (suspend, kill, a signal, an OOM kill) rather than resumed
    /// it or said why it keeps it held (`resume`, `wait`, `keep`).
    pub fn acts(&self) -> bool {
        !matches!(self.what.as_str(), "resume" | "wait" | "keep")
    }
}

fn time_of(line: &str) -> Option<f64> {
    line.split_whitespace().next()?.parse().ok()
}

/// The text between `open` and `close` right after `marker`.
fn between<'a>(line: &'a str, marker: &str, open: char, close: char) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let start = rest.find(open)? + 1;
    let end = start + rest[start..].find(close)?;
    Some(&rest[start..end])
}

/// The command name in the kernel's `Killed process PID (COMM) total-vm:…`; COMM may itself
/// contain parentheses (`(sd-pam)`).
fn killed_comm(line: &str) -> Option<&str> {
    let rest = &line[line.find("Killed process")? + "Killed process".len()..];
    let rest = &rest[..rest.find(" total-vm").unwrap_or(rest.len())];
    let start = rest.find('(')? + 1;
    let end = rest.rfind(')')?;
    rest.get(start..end)
}

/// The actions in `journal` (in order). Resumptions are returned as `what == "resume"`, and
/// memtrace's reasons for keeping a tree held after memory was freed as `wait` or `keep`.
pub fn actions(journal: &[String]) -> Vec<Action> {
    let mut out = Vec::new();
    for line in journal {
        let Some(at) = time_of(line) else { continue };
        let mut push = |actor, what: &str, comm: Option<&str>| {
            out.push(Action {
                at,
                actor,
                what: what.to_owned(),
                comm: comm.unwrap_or("?").to_owned(),
            });
        };
        if line.contains(" kernel: ") && line.contains("Killed process") {
            push(Actor::Kernel, "oom-kill", killed_comm(line));
        } else if line.contains(" earlyoom[")
            && line.contains("sending SIG")
            && line.contains(" to process ")
        {
            let what = if line.contains("SIGKILL") {
                "SIGKILL"
            } else {
                "SIGTERM"
            };
            push(Actor::Earlyoom, what, between(line, "uid", '"', '"'));
        } else if line.contains(" memtrace[") {
            for what in ["suspend", "kill", "resume", "wait", "keep"] {
                if line.contains(&format!(" {what} [")) && !line.contains("dry run") {
                    // A wait/keep line's reason may speak of resumes: its tree follows the pids.
                    let comm = if matches!(what, "wait" | "keep") {
                        between(line, "] | ", '(', ')')
                    } else {
                        between(line, "victim ", '(', ')')
                    };
                    let comm = comm
                        .or_else(|| between(line, "resumed ", '(', ')'))
                        .or_else(|| between(line, "| ", '(', ')'));
                    push(Actor::Memtrace, what, comm);
                }
            }
        }
    }
    out
}

/// The kernel's `Killed process` lines of the guest's serial console (`[uptime] …`) as journal
/// lines (`EPOCH vm kernel: …`), given the guest's boot time in epoch seconds.
pub fn console_kills(console: &str, boot_epoch: f64) -> Vec<String> {
    console
        .lines()
        .filter(|l| l.contains("Killed process"))
        .filter_map(|l| {
            // The stamp may follow other output on the same line (a login prompt).
            l.match_indices('[').find_map(|(i, _)| {
                let (uptime, text) = l[i + 1..].split_once(']')?;
                let uptime: f64 = uptime.trim().parse().ok()?;
                Some(format!(
                    "{:.6} vm kernel: {}",
                    boot_epoch + uptime,
                    text.trim()
                ))
            })
        })
        .collect()
}

/// Whether a kernel OOM kill is in `journal`.
pub fn oom_kills(actions: &[Action]) -> usize {
    actions.iter().filter(|a| a.actor == Actor::Kernel).count()
}

#[cfg(test)]
mod tests {
    //! Parsing the three actors' journal lines.
    use super::*;

    #[test]
    fn parses_each_actor() {
        let lines: Vec<String> = [
            "1700000001.5 vm kernel: Out of memory: Killed process 612 (hog) total-vm:1MB",
            "1700000002.0 vm earlyoom[301]: sending SIGTERM to process 612 uid 0 \"hog\": oom_score 900",
            "1700000003.25 vm memtrace[250]: ERROR suspend [suspend] used 91 %; victim 612 (hog) 1 proc(s) | pids [612]",
            "1700000009.0 vm memtrace[250]: ERROR resume [ok] used 60 % | pids [612] | resumed 612 (hog)",
            "1700000010.0 vm sshd[200]: Server listening on 0.0.0.0 port 22.",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let got = actions(&lines);
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].actor, got[0].comm.as_str()), (Actor::Kernel, "hog"));
        assert_eq!(
            (got[1].what.as_str(), got[1].comm.as_str()),
            ("SIGTERM", "hog")
        );
        assert_eq!(
            (got[2].what.as_str(), got[2].at),
            ("suspend", 1_700_000_003.25)
        );
        assert_eq!(
            (got[3].what.as_str(), got[3].comm.as_str()),
            ("resume", "hog")
        );
        assert_eq!(oom_kills(&got), 1);
        let odd =
            ["1.0 vm kernel: Out of memory: Killed process 9 ((sd-pam)) total-vm:1kB".to_owned()];
        assert_eq!(actions(&odd)[0].comm, "(sd-pam)");
    }

    #[test]
    fn console_kills_get_epoch_times() {
        let console = "memtrace-vm login: [   93.5] Out of memory: Killed process 506 (hog) total-vm:1kB\n\
                       [   94.0] systemd[1]: Started x.\n\
                       garbage Killed process\n";
        let lines = console_kills(console, 1_700_000_000.0);
        assert_eq!(
            lines,
            ["1700000093.500000 vm kernel: Out of memory: Killed process 506 (hog) total-vm:1kB"]
        );
        let got = actions(&lines);
        assert_eq!((got[0].actor, got[0].comm.as_str()), (Actor::Kernel, "hog"));
        assert_eq!(got[0].at, 1_700_000_093.5);
    }
}
