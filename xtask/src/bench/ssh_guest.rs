//! What `bench ssh` runs inside the guest: the Python workloads (each started through a
//! `python3` symlink named after its role, so kernel, earlyoom and memtrace logs name it), the
//! contenders, and the journal lines it reads back afterwards.
use super::ssh_site::{ContainerGuard, Site};

/// The workloads, written to `/root/*.py` in the guest.
pub const SCRIPTS: &[(&str, &str)] = &[
    ("hog.py", HOG),
    ("fork_hog.py", FORK_HOG),
    ("bystander.py", BYSTANDER),
    ("load.py", LOAD),
];

/// Grows by 8 MiB chunks at `argv[1]` MiB/s (0: as fast as it can) until stopped (also the
/// hog of `bench reaction`).
pub const HOG: &str = "import sys, time
rate = float(sys.argv[1])
chunk = 8 << 20
held = []
t0 = time.monotonic()
while True:
    b = bytearray(chunk)
    memoryview(b)[::4096] = b'\\x01' * (chunk // 4096)
    held.append(b)
    if rate > 0:
        wait = t0 + len(held) * 8 / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
";

/// Forks a child every 0.5 s (up to 40); each grows by 1 MiB every 0.2 s up to 48 MiB.
const FORK_HOG: &str = "import os, time
def child():
    held = []
    for _ in range(48):
        b = bytearray(1 << 20)
        memoryview(b)[::4096] = b'\\x01' * 256
        held.append(b)
        time.sleep(0.2)
    while True:
        time.sleep(5)
kids = []
for _ in range(40):
    pid = os.fork()
    if pid == 0:
        child()
        os._exit(0)
    kids.append(pid)
    time.sleep(0.5)
while True:
    time.sleep(5)
";

/// Holds 64 MiB and touches it every 2 s.
const BYSTANDER: &str = "import time
b = bytearray(64 << 20)
while True:
    memoryview(b)[::4096] = b'\\x02' * ((64 << 20) // 4096)
    time.sleep(2)
";

/// The negative control: rises to `argv[1]` MiB over 8 s, holds 5 s, frees, rests 5 s; 3 times.
const LOAD: &str = "import sys, time
top = int(sys.argv[1])
for _ in range(3):
    held = []
    for _ in range(top // 8):
        b = bytearray(8 << 20)
        memoryview(b)[::4096] = b'\\x03' * 2048
        held.append(b)
        time.sleep(8 / (top // 8))
    time.sleep(5)
    held = None
    time.sleep(5)
print('done')
";

/// Size of the tmpfs ballast the runaway scenarios write before the hog starts and delete
/// later ("the test frees memory"), in MiB.
pub const BALLAST_MIB: u32 = 192;

/// The contenders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Contender {
    /// Nothing but the kernel's OOM killer.
    Kernel,
    /// earlyoom with Debian's defaults.
    Earlyoom,
    /// `memtrace guard` with its defaults, as a service (whole machine, signals enabled).
    Memtrace,
}

impl Contender {
    /// The command that starts it in the guest (empty for the kernel).
    pub fn start(self) -> &'static str {
        match self {
            Self::Kernel => "",
            Self::Earlyoom => "systemctl start earlyoom && sleep 1 && systemctl is-active earlyoom",
            Self::Memtrace => "systemctl start memtrace-guard",
        }
    }

    /// Its systemd unit in the guest, if it has one.
    pub fn unit(self) -> Option<&'static str> {
        match self {
            Self::Kernel => None,
            Self::Earlyoom => Some("earlyoom"),
            Self::Memtrace => Some("memtrace-guard"),
        }
    }

    /// The table label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Kernel => "kernel only",
            Self::Earlyoom => "earlyoom",
            Self::Memtrace => "memtrace guard",
        }
    }
}

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A hog growing at 100 MiB/s until stopped.
    Runaway,
    /// A hog leaking 20 MiB/s.
    SlowLeak,
    /// A hog forking many small growing children.
    Fork,
    /// A load rising to 45 % of RAM and falling again, three times: nothing may be acted on.
    Negative,
    /// The runaway hog inside a 640 MiB container (its own cgroup and sshd, Docker's
    /// capabilities dropped, memtrace run inside it as there).
    Container,
}

impl Scenario {
    /// The table label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Runaway => "runaway 100 MiB/s",
            Self::SlowLeak => "slow leak 20 MiB/s",
            Self::Fork => "fork-heavy",
            Self::Negative => "negative control",
            Self::Container => "container 640 MiB",
        }
    }

    /// The transient unit's command line in the guest.
    pub fn hog_command(self) -> &'static str {
        match self {
            Self::Runaway | Self::Container => "/usr/local/bin/hog /root/hog.py 100",
            Self::SlowLeak => "/usr/local/bin/hog /root/hog.py 20",
            Self::Fork => "/usr/local/bin/hog /root/fork_hog.py",
            Self::Negative => "/usr/local/bin/load /root/load.py 400",
        }
    }

    /// Whether a tmpfs ballast is written first and freed while the hog is held.
    pub fn ballast(self) -> bool {
        self != Self::Negative
    }

    /// Where its processes live (`guard`: how memtrace runs in the container).
    pub fn site(self, guard: ContainerGuard) -> Site {
        match self {
            Self::Container => Site::Container(guard),
            _ => Site::Machine,
        }
    }

    /// Seconds from the hog's start to freeing the ballast, then to stopping the hog.
    pub fn timeline(self) -> (u64, u64) {
        match self {
            Self::Runaway | Self::Fork | Self::Container => (40, 20),
            Self::SlowLeak => (60, 20),
            Self::Negative => (50, 5),
        }
    }
}

/// Prints the journal lines `bench ssh` reads: earlyoom's and memtrace's actions (and why it
/// keeps a tree held: wait/keep) and errors,
/// and systemd's view of the units that matter (the kernel's OOM kills come from the console).
pub const JOURNAL: &str = "journalctl -b -o short-unix --no-pager | grep -E \
'earlyoom\\[[0-9]+\\]: (sending|kill|escalating|process)|memtrace\\[[0-9]+\\]: .*( suspend \\[| resume \\[| kill \\[| wait \\[| keep \\[|guarding |error|Error)|(ssh|bystander|hog|container)\\.service: |sshd\\[[0-9]+\\]: (Received signal|Server listening)' \
| cut -c1-600";
