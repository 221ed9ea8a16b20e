//! Parsing real and hostile /proc content.
use super::*;

const STAT_TAIL: &str = "S 1 42 42 0 -1 4194560 1234 0 5 0 10 20 0 0 20 0 1 0 987654 \
                         123456789 2048 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

#[test]
fn stat_plain() {
    let stat = parse_pid_stat(&format!("42 (python3) {STAT_TAIL}")).expect("parses");
    assert_eq!(stat.pid, 42);
    assert_eq!(stat.comm, "python3");
    assert_eq!(stat.state, 'S');
    assert_eq!(stat.ppid, 1);
    assert_eq!(stat.session, 42);
    assert_eq!(stat.minflt, 1234);
    assert_eq!(stat.majflt, 5);
    assert_eq!((stat.utime, stat.stime), (10, 20));
    assert_eq!(stat.start_ticks, 987654);
    assert_eq!((stat.vsize, stat.rss_pages), (123456789, 2048));
    assert_eq!(stat.exit_signal, Some(17));
    assert_eq!(
        (stat.tty_nr, stat.tpgid),
        (0, -1),
        "no controlling terminal"
    );
    assert!(!stat.is_thread());
    // A shell on /dev/pts/1 (136:1) whose foreground job is process group 77.
    let shell = STAT_TAIL.replacen("S 1 42 42 0 -1", "S 1 42 42 34817 77", 1);
    let shell = parse_pid_stat(&format!("42 (bash) {shell}")).expect("parses");
    assert_eq!((shell.tty_nr, shell.tpgid), (34817, 77));
    let thread = STAT_TAIL.replace(" 17 1 0 0 0 0 0", " -1 1 0 0 0 0 0");
    let thread = parse_pid_stat(&format!("43 (python3) {thread}")).expect("parses");
    assert!(thread.is_thread());
    let short =
        parse_pid_stat("9 (x) S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0").expect("parses");
    assert_eq!(short.exit_signal, None, "a short line is no thread");
}

#[test]
fn stat_hostile_comm() {
    let stat = parse_pid_stat(&format!("7 (a) R (b) {STAT_TAIL}")).expect("parses");
    assert_eq!(stat.comm, "a) R (b");
    assert_eq!(stat.ppid, 1);
    assert_eq!(stat.start_ticks, 987654);
    let stat = parse_pid_stat(&format!("8 (x y ) ) {STAT_TAIL}")).expect("parses");
    assert_eq!(stat.comm, "x y ) ");
    assert_eq!(stat.state, 'S');
}

#[test]
fn stat_garbage_is_none() {
    assert_eq!(parse_pid_stat(""), None);
    assert_eq!(parse_pid_stat("12 (short) S 1"), None);
    assert_eq!(parse_pid_stat(") 12 ("), None);
    assert_eq!(parse_stat_memory(""), None);
    assert_eq!(parse_stat_memory("12 (short) S 1"), None);
    assert_eq!(
        parse_stat_memory(&format!("x (p) {STAT_TAIL}")),
        None,
        "no pid"
    );
}

#[test]
fn stat_memory_probe() {
    let text = format!("7 (a) R (b) {STAT_TAIL}");
    let memory = parse_stat_memory(&text).expect("parses");
    assert_eq!(
        memory,
        StatMemory {
            rss_pages: 2048,
            vsize: 123456789,
            faults: 1239,
        }
    );
    assert_eq!(Some(memory), parse_pid_stat(&text).map(|s| s.memory()));
    assert!(!memory.is_none());
    // Only the CPU times moved: the same memory.
    let ran = STAT_TAIL.replacen(" 10 20 ", " 11 25 ", 1);
    assert_ne!(ran, STAT_TAIL);
    assert_eq!(
        parse_stat_memory(&format!("7 (a) R (b) {ran}")),
        Some(memory)
    );
    let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 3 0 0 20 0 1 0 3 0 0 \
                   18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 3 0 0 0 0 0";
    assert!(parse_stat_memory(kthread).expect("parses").is_none());
}

#[test]
fn status_kinds() {
    let text = "Name:\tx\nVmHWM:\t  2048 kB\nRssAnon:\t  1024 kB\nRssFile:\t 512 kB\n\
                RssShmem:\t 0 kB\nVmSwap:\t 4 kB\n";
    let memory = parse_pid_status(text).expect("parses");
    assert_eq!(memory.anon, 1024 * 1024);
    assert_eq!(memory.file, 512 * 1024);
    assert_eq!(memory.swap, 4 * 1024);
    assert_eq!(memory.hwm, 2048 * 1024);
    assert_eq!(memory.rss(), 1536 * 1024);
    assert_eq!(parse_pid_status("Name:\tkthreadd\nPid:\t2\n"), None);
}

#[test]
fn meminfo_and_psi() {
    let text = "MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 50 kB\nSwapTotal: 0 kB\n";
    let info = parse_meminfo(text).expect("parses");
    assert_eq!((info.total, info.available), (102_400, 51_200));
    assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    let psi = parse_psi(
        "some avg10=1.50 avg60=0.20 avg300=0.00 total=123\nfull avg10=0.75 avg60=0.00 avg300=0.00 total=45\n",
    )
    .expect("parses");
    assert_eq!(psi.some.avg10, 1.5);
    assert_eq!(psi.full.total_us, 45);
    assert_eq!(parse_psi("some avg10=x\n"), None);
}

#[test]
fn open_file_rereads_from_the_start() {
    let path = std::env::temp_dir().join(format!("memtrace-openfile-{}", std::process::id()));
    fs::write(&path, "one").expect("write");
    let mut file = OpenFile::open(&path).expect("open");
    assert_eq!(file.text().expect("read"), "one");
    fs::write(&path, "two, longer").expect("write");
    assert_eq!(file.text().expect("read"), "two, longer");
    // Longer than one read, then short again: the buffer grows and is reused.
    let long = "x".repeat(3 * OPEN_FILE_CHUNK + 17);
    fs::write(&path, &long).expect("write");
    assert_eq!(file.text().expect("read"), long);
    fs::write(&path, "three").expect("write");
    assert_eq!(file.text().expect("read"), "three");
    let meminfo = OpenFile::open(Path::new("/proc/meminfo")).and_then(|mut f| {
        let first = f.text()?.len();
        let second = f.text()?.len();
        Ok((first, second))
    });
    let (first, second) = meminfo.expect("meminfo twice");
    assert!(first > 100 && second > 100);
    let _ = fs::remove_file(&path);
}

#[test]
fn cmdline_joins() {
    assert_eq!(parse_cmdline(b"python3\0-m\0x y\0"), "python3 -m x y");
    assert_eq!(parse_cmdline(b""), "");
}
