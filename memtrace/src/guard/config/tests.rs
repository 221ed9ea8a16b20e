//! The embedded default, layering, and the one-line errors that name the key.
use super::*;

#[test]
fn default_is_valid_and_documented_values_hold() {
    let config = GuardConfig::default_config().expect("default config");
    assert_eq!(config.thresholds.warn, 80.0);
    assert_eq!(config.thresholds.kill, 95.0);
    assert!(!config.actions.kill, "kill is opt-in");
    assert!(config.actions.suspend);
    assert_eq!(config.sampling.interval_idle, Duration::from_secs(1));
    assert_eq!(config.sampling.interval_pressure, Duration::from_millis(20));
    assert_eq!(
        config.sampling.fill_rate_bytes_per_s,
        6144.0 * (1 << 20) as f64
    );
    assert_eq!(config.protect.sshd_oom_score_adj, -1000);
    assert_eq!(config.thresholds.resume_hold, Duration::from_secs(30));
    assert_eq!(config.thresholds.max_cycles, 2);
    assert!(
        config
            .victims
            .protected
            .iter()
            .any(|r| r.is_match("systemd"))
    );
    // sshd is protected by its executable (host::sshd): a name protects any impostor.
    assert!(!config.victims.protected.iter().any(|r| r.is_match("sshd")));
    assert!(
        !config
            .victims
            .protected
            .iter()
            .any(|r| r.is_match("python3"))
    );
}

#[test]
fn user_keys_layer_over_the_default() {
    let text = "[thresholds]\nresume_used_percent = 40\nwarn_used_percent = 50\nreclaim_used_percent = 55\nsuspend_used_percent = 60.5\n[actions]\nkill = true\n";
    let config = GuardConfig::from_layers(Some((text, "user.toml"))).expect("valid");
    assert_eq!(config.thresholds.warn, 50.0);
    assert_eq!(config.thresholds.suspend, 60.5);
    assert_eq!(
        config.thresholds.kill, 95.0,
        "untouched keys keep the default"
    );
    assert!(config.actions.kill);
}

fn error(text: &str) -> String {
    let err = GuardConfig::from_layers(Some((text, "bad.toml"))).expect_err("refused");
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message:?}");
    message
}

#[test]
fn errors_name_the_key() {
    let unknown = error("[thresholds]\nwarn_used_percnt = 50\n");
    assert!(
        unknown.contains("bad.toml:2") && unknown.contains("warn_used_percnt"),
        "{unknown}"
    );
    let section = error("[threshold]\n");
    assert!(section.contains("threshold"), "{section}");
    let range = error("[thresholds]\nwarn_used_percent = 120\n");
    assert!(range.contains("thresholds.warn_used_percent"), "{range}");
    let order = error("[thresholds]\nkill_used_percent = 70\n");
    assert!(order.contains("thresholds.kill_used_percent"), "{order}");
    let hysteresis = error(
        "[thresholds]\nresume_used_percent = 92\nwarn_used_percent = 92\nreclaim_used_percent = 92\nsuspend_used_percent = 92\n",
    );
    assert!(hysteresis.contains("resume_used_percent"), "{hysteresis}");
    let dur = error("[sampling]\ninterval_idle = \"soon\"\n");
    assert!(dur.contains("sampling.interval_idle"), "{dur}");
    let regex = error("[victims]\nprefer = [\"(\"]\n");
    assert!(regex.contains("victims.prefer"), "{regex}");
    let hold = error("[thresholds]\nresume_hold = \"later\"\n");
    assert!(hold.contains("thresholds.resume_hold"), "{hold}");
    let cycles = error("[thresholds]\nmax_cycles = -1\n");
    assert!(cycles.contains("bad.toml:2"), "{cycles}");
    let kind = error("[actions]\nkill = \"yes\"\n");
    assert!(kind.contains("bad.toml:2"), "{kind}");
    let psi = error("[sampling]\npsi_window = \"20s\"\n");
    assert!(psi.contains("sampling.psi_window"), "{psi}");
    let temp = error("[actions]\ntemp_dirs = [\"/\"]\n");
    assert!(temp.contains("actions.temp_dirs"), "{temp}");
    let tty = error("[notify]\nextra_terminals = [\"/etc/passwd\"]\n");
    assert!(tty.contains("notify.extra_terminals"), "{tty}");
    let sneaky = error("[notify]\nextra_terminals = [\"/dev/../etc/shadow\"]\n");
    assert!(sneaky.contains("notify.extra_terminals"), "{sneaky}");
    let timeout = error("[notify]\nhook_timeout = \"never\"\n");
    assert!(timeout.contains("notify.hook_timeout"), "{timeout}");
}

#[test]
fn temp_dirs_are_checked_roots() {
    let tree = tempfile::tempdir().expect("temp dir");
    let base = std::fs::canonicalize(tree.path()).expect("canonical");
    let link = base.join("link");
    std::os::unix::fs::symlink("/etc", &link).expect("symlink");
    let toml = |dir: &str| format!("[actions]\ntemp_dirs = [\"/tmp\", {dir:?}]\n");
    let cases = [
        ("/tmp/..".to_owned(), "`..`"),
        ("/etc".to_owned(), "system directory /etc"),
        ("/var".to_owned(), "system directory /var"),
        (format!("{}/", link.display()), "is a symlink"),
        (base.join("missing").display().to_string(), "No such file"),
        ("tmp".to_owned(), "must be an absolute path"),
    ];
    for (dir, needle) in cases {
        let message = error(&toml(&dir));
        assert!(
            message.starts_with("config key actions.temp_dirs: ") && message.contains(needle),
            "{dir}: {message}"
        );
    }
    let text = toml(&format!("{}/./", base.display()));
    let config = GuardConfig::from_layers(Some((&text, "ok.toml"))).expect("valid");
    assert_eq!(
        config.actions.temp_dirs,
        vec![PathBuf::from("/tmp"), base],
        "canonical"
    );
}

#[test]
fn a_fill_rate_that_is_not_positive_is_refused() {
    for bad in ["0.0", "-1.0", "nan"] {
        let err = error(&format!("[sampling]\nfill_rate_mib_per_s = {bad}\n"));
        assert!(err.contains("sampling.fill_rate_mib_per_s"), "{err}");
    }
}
