# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_memtrace_global_optspecs
    string join \n h/help V/version
end

function __fish_memtrace_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_memtrace_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_memtrace_using_subcommand
    set -l cmd (__fish_memtrace_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c memtrace -n "__fish_memtrace_needs_command" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_needs_command" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "guard" -d 'Act on memory pressure: warn, reclaim, suspend/resume, kill the growing tree (root)'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "top" -d 'Live per-process memory table sorted by growth (needs root: loads eBPF)'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "status" -d 'Memory status: RAM, swap, PSI and the top processes by RSS (no root needed)'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "swap" -d 'Swap: status against the recommendation for this RAM, setup and removal of a swap file'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "doctor" -d 'Host checks (swap, sysctls, THP, PSI, BTF, tracepoints, NVML, sshd, guard) with fixes'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "clean" -d 'Free memory: drop the page cache, delete old temp files; reports what each step freed'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "run" -d 'Run a pipeline under tracing: swap check, memory-friendly env, stage marks, `[Memory]` lines, a trace file, the child\'s exit code (needs root: loads eBPF)'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "record" -d 'Record a trace of a command, a running process tree (--pid) or every process'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "mark" -d 'Mark a stage of the pipeline running under `memtrace run` (STAGE [--clip ID] or --end)'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "report" -d 'Which stage leaks, how much per clip, host or GPU: the report of a trace'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "export" -d 'Export a trace for Perfetto (ui.perfetto.dev), as CSV or as JSON lines'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "demo" -d 'A synthetic multi-stage clip pipeline with one leaking stage, run and reported'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "demo-pipeline" -d 'The pipeline `memtrace demo` runs'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "load-tracer" -d 'Load and attach the eBPF programs for the guard, hand it the descriptors and exit (run by the guard itself, never by hand)'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "completions" -d 'Print shell completions (bash, zsh, fish, elvish, powershell) to stdout'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "man-pages" -d 'Write the man pages (memtrace.1 and one per subcommand) into DIR (`cargo xtask install`)'
complete -c memtrace -n "__fish_memtrace_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -s c -l config -d 'TOML configuration layered over the embedded default' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l cgroup -d 'Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in [default: memtrace\'s own cgroup when a limit below the machine\'s RAM binds it (a container), else the machine]' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l metrics -d 'Serve OpenMetrics on this address (e.g. 127.0.0.1:9184). Off by default' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l state-file -d 'Where suspended trees are recorded (a restarted guard resumes them), in a directory only root can write [default: /run/memtrace/guard-suspended.json for the machine, /run/memtrace/guard-cgroup+PATH-suspended.json for --cgroup PATH]' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l run -d 'With status, resume, kill or keep: ask the guard inside the `memtrace run` whose pid is PID (what it holds of its pipeline) instead of the running `memtrace guard`' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l psi-file -d 'Pressure file to arm instead of the scope\'s (tests)' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l exit-after -d 'Stop after this long (tests, benchmarks)' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l print-config -d 'Print the embedded default configuration and exit'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l machine -d 'Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l dry-run -d 'Log every decision, send nothing, change nothing'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l no-psi -d 'Run without a PSI trigger (polling only), for kernels without PSI'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l no-usage-events -d 'Poll only, without usage threshold events on a v1 cgroup (benchmarks: the behaviour of cgroup v2 and the machine scope)'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l per-event -d 'Have the kernel count every change of every process\'s memory, as `run` does: an eBPF program on every page fault of the machine (see --help: which mode costs what)'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l rare-events -d 'The default since per-event counting became opt-in (`--per-event`): only the programs of rare events. Accepted for the scripts that still pass it'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -l require-ebpf -d 'Refuse to start without eBPF instead of reading /proc (--help: which mode costs what)'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -f -a "status" -d 'What the running guard of this scope holds: since when, why, the memory it holds'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -f -a "resume" -d 'Resume a held tree (ID: its root\'s pid, as `status` shows it)'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -f -a "kill" -d 'Kill a held tree: SIGTERM, then SIGKILL after the configured grace'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -f -a "keep" -d 'Keep a held tree held: the guard will not resume it by itself'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and not __fish_seen_subcommand_from status resume kill keep help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from status" -l json -d 'One JSON object instead of text'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from kill" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from kill" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from keep" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from keep" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "status" -d 'What the running guard of this scope holds: since when, why, the memory it holds'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Resume a held tree (ID: its root\'s pid, as `status` shows it)'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "kill" -d 'Kill a held tree: SIGTERM, then SIGKILL after the configured grace'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "keep" -d 'Keep a held tree held: the guard will not resume it by itself'
complete -c memtrace -n "__fish_memtrace_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -s i -l interval -d 'Sampling interval: seconds (`2`, `0.5`) or with a unit (`500ms`, `2s`)' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -l window -d 'Window growth rates are computed over (default: one interval)' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -s n -l rows -d 'Rows in the table (the JSON output always has every process)' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -l once -d 'Print one snapshot after one interval and exit'
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -l json -d 'Print snapshots as JSON arrays of processes, one line each'
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -l plain -d 'Print the plain table even when stdout is a terminal (no interactive view)'
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -l per-event -d 'Count every change of every process\'s resident memory in the kernel, as `run` and `record` do: one eBPF program run per change (`rss_stat`), a few per cent of a page-fault storm. By default `top` runs nothing on the page-fault path'
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -l fault-hook -d 'Also count faults with a per-fault eBPF hook (implies --per-event; by default they come from the kernel\'s own per-task counters at no per-fault cost)'
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -l rare-events -d 'What `top` does by default (kept for earlier command lines)'
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -l require-ebpf -d 'Refuse to start without eBPF instead of reading /proc (--help: which mode costs what)'
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memtrace -n "__fish_memtrace_using_subcommand top" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand status" -l cgroup -d 'Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in [default: memtrace\'s own cgroup when a limit below the machine\'s RAM binds it (a container), else the machine]' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand status" -l json -d 'Print one JSON object instead of text'
complete -c memtrace -n "__fish_memtrace_using_subcommand status" -l machine -d 'Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)'
complete -c memtrace -n "__fish_memtrace_using_subcommand status" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand status" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and not __fish_seen_subcommand_from status setup remove help" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and not __fish_seen_subcommand_from status setup remove help" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and not __fish_seen_subcommand_from status setup remove help" -f -a "status" -d 'Active swap, its use, and the recommendation for this much RAM (no root needed)'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and not __fish_seen_subcommand_from status setup remove help" -f -a "setup" -d 'Create and enable a swap file (root). Running it again is a no-op'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and not __fish_seen_subcommand_from status setup remove help" -f -a "remove" -d 'Disable and delete a swap file and its fstab line (root)'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and not __fish_seen_subcommand_from status setup remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from status" -l cgroup -d 'Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in [default: memtrace\'s own cgroup when a limit below the machine\'s RAM binds it (a container), else the machine]' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from status" -l json -d 'Print one JSON object instead of text'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from status" -l machine -d 'Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from setup" -l path -d 'Where the swap file goes' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from setup" -l fstab -d 'The fstab to edit (for tests)' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from setup" -l persist -d 'Also add a line to /etc/fstab so the swap file is enabled at boot (idempotent)'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from setup" -l dry-run -d 'Run the checks and say what would be done, change nothing (no root needed)'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from setup" -l machine -d 'Set swap up for the whole machine even though memtrace runs in a memory-limited cgroup (a privileged container that may change the host)'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from setup" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from setup" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from remove" -l path -d 'The swap file to remove' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from remove" -l fstab -d 'The fstab to edit (for tests)' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from help" -f -a "status" -d 'Active swap, its use, and the recommendation for this much RAM (no root needed)'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from help" -f -a "setup" -d 'Create and enable a swap file (root). Running it again is a no-op'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Disable and delete a swap file and its fstab line (root)'
complete -c memtrace -n "__fish_memtrace_using_subcommand swap; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memtrace -n "__fish_memtrace_using_subcommand doctor" -l cgroup -d 'Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in [default: memtrace\'s own cgroup when a limit below the machine\'s RAM binds it (a container), else the machine]' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand doctor" -l root -d 'Read ROOT/proc, ROOT/sys and ROOT/etc instead of the host\'s (for tests)' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand doctor" -l json -d 'Print one JSON object instead of text'
complete -c memtrace -n "__fish_memtrace_using_subcommand doctor" -l apply -d 'Apply the safe, reversible fixes (sysctls, sshd\'s oom_score_adj) and print old → new'
complete -c memtrace -n "__fish_memtrace_using_subcommand doctor" -l machine -d 'Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)'
complete -c memtrace -n "__fish_memtrace_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand clean" -l temp -d 'Delete files older than --older-than below DIR (several allowed). Never follows symlinks, never leaves DIR or its filesystem, keeps files any process has open' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand clean" -l older-than -d 'Minimum age of what --temp deletes: 30m, 1h, 12h (at most a day)' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand clean" -l drop-caches -d 'sync, then drop the page cache (writes 1 to /proc/sys/vm/drop_caches; root)'
complete -c memtrace -n "__fish_memtrace_using_subcommand clean" -l dry-run -d 'Say what would be freed, change nothing'
complete -c memtrace -n "__fish_memtrace_using_subcommand clean" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand clean" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -s o -l out -d 'Where the trace goes (default: memtrace-run-<unix time>.mtrace here)' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -l config -d 'Config file: its `[run]` table sets `interval` and `env` (see README); other tables (the guard\'s) are read by their owners' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -s i -l interval -d 'Sampling interval between marks (default 200ms, or the config\'s)' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -l stage-regex -d 'Turn the pipeline\'s output lines into stage marks: a regex with a `stage` group and optionally a `clip` group, e.g. \'clip (?P<clip>\\d+)/\\d+: (?P<stage>\\w+)\'' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -l cgroup -d 'Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in [default: memtrace\'s own cgroup when a limit below the machine\'s RAM binds it (a container), else the machine]' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -l memory-high -d 'Throttle and reclaim the pipeline above SIZE (e.g. 12G): the cgroup v2 `memory.high` of the cgroup the run makes for it. cgroup v1 has no memory.high: refused there' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -l memory-max -d 'Limit the pipeline to SIZE (e.g. 16G): the kernel OOM-kills inside the run\'s own cgroup above it, nothing else on the machine is touched (`memory.max`, v1 `memory.limit_in_bytes`; no swap on v2)' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -l quiet -d 'Do not print a `[Memory]` line per stage'
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -l require-ebpf -d 'Refuse to start without eBPF instead of reading /proc (--help: which mode costs what)'
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -l machine -d 'Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)'
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -l no-scope -d 'On cgroup v2 under systemd, do not run in a transient systemd scope of the run\'s own (`memtrace-run-PID.scope`, in the slice memtrace was started from): make the pipeline\'s cgroup at the root of the hierarchy instead'
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memtrace -n "__fish_memtrace_using_subcommand run" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand record" -s o -l out -d 'The trace file to write' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand record" -l pid -d 'Trace the process tree of this running process (until it ends, or Ctrl-C)' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand record" -s i -l interval -d 'Sampling interval' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand record" -l require-ebpf -d 'Refuse to start without eBPF instead of reading /proc (--help: which mode costs what)'
complete -c memtrace -n "__fish_memtrace_using_subcommand record" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memtrace -n "__fish_memtrace_using_subcommand record" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand mark" -l clip -d 'The clip it works on' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand mark" -l end -d 'End the current stage instead'
complete -c memtrace -n "__fish_memtrace_using_subcommand mark" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand mark" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand report" -l html -d 'Also write a self-contained HTML report (chart + tables) to this file' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand report" -l json -d 'Print the report as one JSON object'
complete -c memtrace -n "__fish_memtrace_using_subcommand report" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand report" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand export" -s f -l format -d 'Output format: perfetto, csv or jsonl' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand export" -s o -l out -d 'Where to write it' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand export" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand export" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand demo" -l clips -d 'Clips the synthetic pipeline processes' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand demo" -s o -l out -d 'Where the trace goes (default: memtrace-demo.mtrace in the temp directory)' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand demo" -l html -d 'Also write the HTML report here' -r -F
complete -c memtrace -n "__fish_memtrace_using_subcommand demo" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand demo" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand demo-pipeline" -l clips -d 'Clips to process' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand demo-pipeline" -l worker-mib -d 'Act as the render worker: hold this many MiB briefly, then exit' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand demo-pipeline" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand demo-pipeline" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand load-tracer" -l fd -d 'The inherited socket to send the descriptors on' -r
complete -c memtrace -n "__fish_memtrace_using_subcommand load-tracer" -l rare-events -d 'Only the programs of rare events'
complete -c memtrace -n "__fish_memtrace_using_subcommand load-tracer" -l fault-hook -d 'Also the per-fault counter'
complete -c memtrace -n "__fish_memtrace_using_subcommand load-tracer" -l exit-memory -d 'Every exit reports its memory ([`TracerOptions::exit_memory`])'
complete -c memtrace -n "__fish_memtrace_using_subcommand load-tracer" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand load-tracer" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand completions" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand completions" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand man-pages" -s h -l help -d 'Print help'
complete -c memtrace -n "__fish_memtrace_using_subcommand man-pages" -s V -l version -d 'Print version'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "guard" -d 'Act on memory pressure: warn, reclaim, suspend/resume, kill the growing tree (root)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "top" -d 'Live per-process memory table sorted by growth (needs root: loads eBPF)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "status" -d 'Memory status: RAM, swap, PSI and the top processes by RSS (no root needed)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "swap" -d 'Swap: status against the recommendation for this RAM, setup and removal of a swap file'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "doctor" -d 'Host checks (swap, sysctls, THP, PSI, BTF, tracepoints, NVML, sshd, guard) with fixes'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "clean" -d 'Free memory: drop the page cache, delete old temp files; reports what each step freed'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "run" -d 'Run a pipeline under tracing: swap check, memory-friendly env, stage marks, `[Memory]` lines, a trace file, the child\'s exit code (needs root: loads eBPF)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "record" -d 'Record a trace of a command, a running process tree (--pid) or every process'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "mark" -d 'Mark a stage of the pipeline running under `memtrace run` (STAGE [--clip ID] or --end)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "report" -d 'Which stage leaks, how much per clip, host or GPU: the report of a trace'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "export" -d 'Export a trace for Perfetto (ui.perfetto.dev), as CSV or as JSON lines'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "demo" -d 'A synthetic multi-stage clip pipeline with one leaking stage, run and reported'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "demo-pipeline" -d 'The pipeline `memtrace demo` runs'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "load-tracer" -d 'Load and attach the eBPF programs for the guard, hand it the descriptors and exit (run by the guard itself, never by hand)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "completions" -d 'Print shell completions (bash, zsh, fish, elvish, powershell) to stdout'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "man-pages" -d 'Write the man pages (memtrace.1 and one per subcommand) into DIR (`cargo xtask install`)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and not __fish_seen_subcommand_from guard top status swap doctor clean run record mark report export demo demo-pipeline load-tracer completions man-pages help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "status" -d 'What the running guard of this scope holds: since when, why, the memory it holds'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "resume" -d 'Resume a held tree (ID: its root\'s pid, as `status` shows it)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "kill" -d 'Kill a held tree: SIGTERM, then SIGKILL after the configured grace'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "keep" -d 'Keep a held tree held: the guard will not resume it by itself'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and __fish_seen_subcommand_from swap" -f -a "status" -d 'Active swap, its use, and the recommendation for this much RAM (no root needed)'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and __fish_seen_subcommand_from swap" -f -a "setup" -d 'Create and enable a swap file (root). Running it again is a no-op'
complete -c memtrace -n "__fish_memtrace_using_subcommand help; and __fish_seen_subcommand_from swap" -f -a "remove" -d 'Disable and delete a swap file and its fstab line (root)'
