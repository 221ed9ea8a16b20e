//! The idle login shell's terminal as the ssh user sees it: everything the guest writes to the
//! shell's pty arrives on the ssh client's stdout, read here on a thread of its own with the
//! host time of every chunk, so a run can say whether and when the guard's notice reached the
//! logged-in terminal.
use std::{
    io::Read as _,
    process::ChildStdout,
    sync::{Arc, Mutex},
    time::Instant,
};

/// The first line of the guard's notice of a suspension (see memtrace's `guard::notify`).
pub const HELD_NOTICE: &str = "memtrace guard: HELD";

/// Typed into the shell to tie the host's clock to the guest's: the guest's time comes back
/// over the already open connection, a one-way trip of milliseconds while the guest is idle
/// (a new ssh connection would add its whole handshake).
pub const CLOCK_COMMAND: &[u8] = b"echo MEMTRACE-CLOCK $(date +%s.%N)\n";
const CLOCK_MARK: &str = "MEMTRACE-CLOCK ";

/// Bytes as they arrived, with the host time of each read.
type Chunks = Vec<(Instant, Vec<u8>)>;

/// What arrived on the terminal so far, chunk by chunk.
#[derive(Debug, Clone, Default)]
pub struct TerminalLog {
    chunks: Arc<Mutex<Chunks>>,
}

impl TerminalLog {
    /// Reads `stdout` until it closes (the ssh client ends), on a thread of its own.
    pub fn follow(mut stdout: ChildStdout) -> Self {
        let log = Self::default();
        let sink = Arc::clone(&log.chunks);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if let Ok(mut chunks) = sink.lock() {
                    chunks.push((Instant::now(), buf[..n].to_vec()));
                }
            }
        });
        log
    }

    /// Whether `needle` arrives within `limit` (checked every 50 ms).
    pub fn wait_for(&self, needle: &str, limit: std::time::Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.first(needle).is_some() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.first(needle).is_some()
    }

    /// Everything that arrived, as text.
    pub fn text(&self) -> String {
        let chunks = self.chunks.lock().map(|c| c.clone()).unwrap_or_default();
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|(_, b)| b).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// When `needle` had first fully arrived (host clock).
    fn first(&self, needle: &str) -> Option<Instant> {
        let chunks = self.chunks.lock().ok()?;
        first_arrival(&chunks, needle)
    }

    /// The guest's epoch time printed by [`CLOCK_COMMAND`] and the host time it arrived.
    pub fn clock(&self) -> Option<(Instant, f64)> {
        let chunks = self.chunks.lock().ok()?;
        let mut seen = Vec::new();
        chunks.iter().find_map(|(at, bytes)| {
            seen.extend_from_slice(bytes);
            parse_clock(&String::from_utf8_lossy(&seen)).map(|t| (*at, t))
        })
    }

    /// The guest's epoch time when `needle` had first fully arrived, through [`Self::clock`].
    pub fn guest_time_of(&self, needle: &str) -> Option<f64> {
        let (synced, guest) = self.clock()?;
        let at = self.first(needle)?;
        Some(match at.checked_duration_since(synced) {
            Some(after) => guest + after.as_secs_f64(),
            None => guest - synced.duration_since(at).as_secs_f64(),
        })
    }
}

/// The arrival time of the chunk that completed the first `needle` (which may span chunks).
fn first_arrival(chunks: &[(Instant, Vec<u8>)], needle: &str) -> Option<Instant> {
    let mut seen = Vec::new();
    for (at, bytes) in chunks {
        seen.extend_from_slice(bytes);
        if seen
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
        {
            return Some(*at);
        }
    }
    None
}

/// The first complete `MEMTRACE-CLOCK SECONDS` line's seconds (the echo of the typed command
/// has `$(date` there instead).
fn parse_clock(text: &str) -> Option<f64> {
    text.match_indices(CLOCK_MARK).find_map(|(i, _)| {
        let rest = &text[i + CLOCK_MARK.len()..];
        let end = rest.find(['\r', '\n'])?;
        rest[..end].trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    //! Finding a notice split across chunks.
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_notice_split_across_chunks_arrives_with_its_last_part() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let chunks = vec![
            (at(0), b"root@vm:~# ".to_vec()),
            (at(10), b"\r\nmemtrace gu".to_vec()),
            (at(20), b"ard: HELD 612 (hog)\r\n".to_vec()),
            (at(30), b"memtrace guard: HELD 700 (hog)\r\n".to_vec()),
        ];
        assert_eq!(first_arrival(&chunks, HELD_NOTICE), Some(at(20)));
        assert_eq!(first_arrival(&chunks[..2], HELD_NOTICE), None);
        assert_eq!(first_arrival(&[], HELD_NOTICE), None);
    }

    #[test]
    fn the_clock_line_is_read_and_the_echoed_command_is_not() {
        let echo = "echo MEMTRACE-CLOCK $(date +%s.%N)\r\n";
        assert_eq!(parse_clock(echo), None);
        assert_eq!(
            parse_clock(&format!(
                "{echo}MEMTRACE-CLOCK 1700000000.250\r\nroot@vm:~# "
            )),
            Some(1_700_000_000.25)
        );
        assert_eq!(
            parse_clock("MEMTRACE-CLOCK 1700000000.2"),
            None,
            "not complete yet"
        );
    }
}
