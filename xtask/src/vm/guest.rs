//! One boot of the guest: a run directory `target/vm/run-*` with a fresh ed25519 key pair and a
//! qcow2 overlay over the cached image, qemu (TCG, 2 vCPUs, 1 GiB, no swap) with user-mode
//! networking whose only host forwards are 127.0.0.1:PORT → guest:22 (the guest's sshd) and
//! 127.0.0.1:PORT2 → guest:2222 (the sshd of `bench ssh`'s container, when it runs one), and ssh
//! helpers that never wait longer than asked. qemu and every ssh client are our own children, killed by PID when
//! their guard drops.
use std::{
    io::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::image::{Image, vm_dir};
use crate::tools;

/// Guest memory in MiB.
pub const GUEST_MIB: u32 = 1024;
/// The guest port of the second sshd `bench ssh` starts inside its container.
pub const CONTAINER_SSH_PORT: u16 = 2222;

/// Which sshd of the guest a command goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sshd {
    /// The guest's own (port 22).
    Guest,
    /// The one `bench ssh` runs in its container ([`CONTAINER_SSH_PORT`]).
    Container,
}

/// A child killed (SIGKILL, by PID) and reaped on drop unless it already exited.
#[derive(Debug)]
pub struct Owned(pub Child);

impl Owned {
    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.0.try_wait().ok().flatten().is_some()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.exited() {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The outcome of one `ssh true`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probe {
    /// Succeeded after this many seconds.
    Ok(f64),
    /// ssh failed (exit status ≠ 0) after this many seconds.
    Failed(f64),
    /// Still running at the cap; killed.
    TimedOut,
}

/// A booted guest.
#[derive(Debug)]
pub struct Guest {
    qemu: Option<Owned>,
    dir: PathBuf,
    port: u16,
    container_port: u16,
}

/// Two distinct free loopback ports (both listeners are held until both are known).
fn free_ports() -> anyhow::Result<(u16, u16)> {
    let bind = || TcpListener::bind("127.0.0.1:0").context("finding a free loopback port");
    let (a, b) = (bind()?, bind()?);
    let port = |l: &TcpListener| l.local_addr().context("reading the port").map(|a| a.port());
    Ok((port(&a)?, port(&b)?))
}

/// Drains `pipe` on its own thread, so a child writing more than a pipe buffer never blocks.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` up to `cap`; `None` (after killing it) when it was still running.
fn wait_capped(mut child: Child, cap: Duration) -> anyhow::Result<Option<std::process::Output>> {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut owned = Owned(child);
    let start = Instant::now();
    while start.elapsed() < cap {
        if owned.exited() {
            return Ok(Some(std::process::Output {
                status: owned.0.wait().context("reaping ssh")?,
                stdout: stdout.join().unwrap_or_default(),
                stderr: stderr.join().unwrap_or_default(),
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Dropping `owned` kills the child; the reader threads end with its pipes.
    Ok(None)
}

impl Guest {
    /// Boots `image` and waits (at most `timeout`) until `ssh true` succeeds.
    pub fn boot(image: &Image, timeout: Duration) -> anyhow::Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let dir = vm_dir().join(format!("run-{stamp}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = dir.join("id_ed25519");
        tools::run_checked(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "xtask", "-f"])
                .arg(&key)
                .stdout(Stdio::null()),
            "ssh-keygen",
        )?;
        let public = std::fs::read_to_string(dir.join("id_ed25519.pub"))
            .context("reading the public key")?;
        let blob = public
            .split_whitespace()
            .nth(1)
            .context("malformed public key")?
            .to_owned();
        let overlay = dir.join("overlay.qcow2");
        tools::run_checked(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                .arg(&image.rootfs)
                .arg(&overlay)
                .env("LD_LIBRARY_PATH", &image.lib_path),
            "qemu-img create (overlay)",
        )?;
        let (port, container_port) = free_ports()?;
        let mut cmd = Command::new(&image.qemu);
        cmd.env("LD_LIBRARY_PATH", &image.lib_path);
        for dir in &image.firmware {
            cmd.arg("-L").arg(dir);
        }
        cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2"])
            .args(["-m", &GUEST_MIB.to_string(), "-nodefaults", "-no-reboot"])
            .args(["-display", "none", "-rtc", "base=utc"])
            .arg("-serial")
            .arg(format!("file:{}", dir.join("console.log").display()))
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .arg("-append")
            .arg(format!(
                "root=/dev/vda rw console=ttyS0 quiet panic=-1 memtrace.key={blob}"
            ))
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
            .arg("-netdev")
            .arg(format!(
                "user,id=n,hostfwd=tcp:127.0.0.1:{port}-:22,\
                 hostfwd=tcp:127.0.0.1:{container_port}-:{CONTAINER_SSH_PORT}"
            ))
            .args(["-device", "virtio-net-pci,netdev=n,romfile="])
            .args(["-device", "virtio-rng-pci"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("qemu.stderr")).context("creating qemu.stderr")?,
            );
        let qemu = Owned(cmd.spawn().context("starting qemu-system-x86_64")?);
        let mut guest = Self {
            qemu: Some(qemu),
            dir,
            port,
            container_port,
        };
        let start = Instant::now();
        loop {
            if guest.qemu_exited() {
                bail!(
                    "qemu exited during boot; see {}/console.log and qemu.stderr",
                    guest.dir.display()
                );
            }
            if let Probe::Ok(_) = guest.probe(Duration::from_secs(20)) {
                return Ok(guest);
            }
            if start.elapsed() > timeout {
                bail!(
                    "the guest did not answer ssh within {} s; see {}/console.log",
                    timeout.as_secs(),
                    guest.dir.display()
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Whether qemu has exited.
    pub fn qemu_exited(&mut self) -> bool {
        self.qemu.as_mut().is_none_or(Owned::exited)
    }

    /// The host port forwarded to the guest's sshd.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// This boot's run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An ssh command to the guest running `remote` (non-interactive, key only, no host key
    /// checks: the guest's host key is new on every image build).
    pub fn ssh(&self, remote: &str) -> Command {
        self.ssh_with(&[], remote)
    }

    /// [`Self::ssh`] with extra client options (e.g. `-tt`).
    pub fn ssh_with(&self, options: &[&str], remote: &str) -> Command {
        self.ssh_to(Sshd::Guest, options, remote)
    }

    /// [`Self::ssh_with`] to the chosen sshd.
    pub fn ssh_to(&self, sshd: Sshd, options: &[&str], remote: &str) -> Command {
        let port = match sshd {
            Sshd::Guest => self.port,
            Sshd::Container => self.container_port,
        };
        let mut cmd = Command::new("ssh");
        cmd.args(options)
            .arg("-i")
            .arg(self.dir.join("id_ed25519"))
            .args(["-p", &port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "LogLevel=ERROR", "-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=60", "-o", "IdentitiesOnly=yes"])
            .arg("root@127.0.0.1")
            .arg(remote);
        cmd
    }

    /// Times one `ssh true` to the guest's sshd, killed at `cap`.
    pub fn probe(&self, cap: Duration) -> Probe {
        self.probe_to(Sshd::Guest, cap)
    }

    /// Times one `ssh true` to the chosen sshd, killed at `cap`.
    pub fn probe_to(&self, sshd: Sshd, cap: Duration) -> Probe {
        let start = Instant::now();
        let child = self
            .ssh_to(sshd, &[], "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child.map(|c| wait_capped(c, cap)) {
            Ok(Ok(Some(out))) if out.status.success() => Probe::Ok(start.elapsed().as_secs_f64()),
            Ok(Ok(Some(_))) | Err(_) | Ok(Err(_)) => Probe::Failed(start.elapsed().as_secs_f64()),
            Ok(Ok(None)) => Probe::TimedOut,
        }
    }

    /// Runs `remote` with `input` on its stdin; its stdout, or an error with its stderr.
    pub fn ssh_input(&self, remote: &str, input: &[u8], cap: Duration) -> anyhow::Result<String> {
        let mut child = self
            .ssh(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ssh")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).context("writing to ssh")?;
        }
        let out = wait_capped(child, cap)?
            .with_context(|| format!("`{remote}` in the guest took over {} s", cap.as_secs()))?;
        if !out.status.success() {
            bail!(
                "`{remote}` in the guest failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `remote`; its stdout.
    pub fn ssh_output(&self, remote: &str, cap: Duration) -> anyhow::Result<String> {
        self.ssh_input(remote, b"", cap)
    }

    /// Powers the guest off (at most `grace`, then qemu is killed) and deletes the overlay.
    pub fn shutdown(mut self, grace: Duration) -> anyhow::Result<()> {
        let _ = self
            .ssh("systemctl poweroff")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|c| wait_capped(c, Duration::from_secs(15)));
        let start = Instant::now();
        while !self.qemu_exited() && start.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(200));
        }
        // Kills qemu (by PID) if it is still running.
        self.qemu = None;
        std::fs::remove_file(self.dir.join("overlay.qcow2")).context("removing the overlay")
    }
}
