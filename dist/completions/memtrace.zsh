#compdef memtrace

autoload -U is-at-least

_memtrace() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_memtrace_commands" \
"*::: :->memtrace" \
&& ret=0
    case $state in
    (memtrace)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:memtrace-command-$line[1]:"
        case $line[1] in
            (guard)
_arguments "${_arguments_options[@]}" : \
'-c+[TOML configuration layered over the embedded default]:FILE:_files' \
'--config=[TOML configuration layered over the embedded default]:FILE:_files' \
'--cgroup=[Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in \[default\: memtrace'\''s own cgroup when a limit below the machine'\''s RAM binds it (a container), else the machine\]]:PATH:_files' \
'--metrics=[Serve OpenMetrics on this address (e.g. 127.0.0.1\:9184). Off by default]:ADDR:_default' \
'--state-file=[Where suspended trees are recorded (a restarted guard resumes them), in a directory only root can write \[default\: /run/memtrace/guard-suspended.json for the machine, /run/memtrace/guard-cgroup+PATH-suspended.json for --cgroup PATH\]]:FILE:_files' \
'(--state-file)--run=[With status, resume, kill or keep\: ask the guard inside the \`memtrace run\` whose pid is PID (what it holds of its pipeline) instead of the running \`memtrace guard\`]:PID:_default' \
'--psi-file=[Pressure file to arm instead of the scope'\''s (tests)]:PSI_FILE:_files' \
'--exit-after=[Stop after this long (tests, benchmarks)]:EXIT_AFTER:_default' \
'--print-config[Print the embedded default configuration and exit]' \
'(--cgroup)--machine[Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)]' \
'--dry-run[Log every decision, send nothing, change nothing]' \
'--no-psi[Run without a PSI trigger (polling only), for kernels without PSI]' \
'--no-usage-events[Poll only, without usage threshold events on a v1 cgroup (benchmarks\: the behaviour of cgroup v2 and the machine scope)]' \
'--per-event[Have the kernel count every change of every process'\''s memory, as \`run\` does\: an eBPF program on every page fault of the machine (see --help\: which mode costs what)]' \
'(--per-event)--rare-events[The default since per-event counting became opt-in (\`--per-event\`)\: only the programs of rare events. Accepted for the scripts that still pass it]' \
'--require-ebpf[Refuse to start without eBPF instead of reading /proc (--help\: which mode costs what)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_memtrace__subcmd__guard_commands" \
"*::: :->guard" \
&& ret=0

    case $state in
    (guard)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:memtrace-guard-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
'--json[One JSON object instead of text]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(resume)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':id -- The tree'\''s id:_default' \
&& ret=0
;;
(kill)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':id -- The tree'\''s id:_default' \
&& ret=0
;;
(keep)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':id -- The tree'\''s id:_default' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_memtrace__subcmd__guard__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:memtrace-guard-help-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(resume)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(kill)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(keep)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(top)
_arguments "${_arguments_options[@]}" : \
'-i+[Sampling interval\: seconds (\`2\`, \`0.5\`) or with a unit (\`500ms\`, \`2s\`)]:INTERVAL:_default' \
'--interval=[Sampling interval\: seconds (\`2\`, \`0.5\`) or with a unit (\`500ms\`, \`2s\`)]:INTERVAL:_default' \
'--window=[Window growth rates are computed over (default\: one interval)]:WINDOW:_default' \
'-n+[Rows in the table (the JSON output always has every process)]:ROWS:_default' \
'--rows=[Rows in the table (the JSON output always has every process)]:ROWS:_default' \
'--once[Print one snapshot after one interval and exit]' \
'--json[Print snapshots as JSON arrays of processes, one line each]' \
'--plain[Print the plain table even when stdout is a terminal (no interactive view)]' \
'--per-event[Count every change of every process'\''s resident memory in the kernel, as \`run\` and \`record\` do\: one eBPF program run per change (\`rss_stat\`), a few per cent of a page-fault storm. By default \`top\` runs nothing on the page-fault path]' \
'--fault-hook[Also count faults with a per-fault eBPF hook (implies --per-event; by default they come from the kernel'\''s own per-task counters at no per-fault cost)]' \
'(--per-event --fault-hook)--rare-events[What \`top\` does by default (kept for earlier command lines)]' \
'--require-ebpf[Refuse to start without eBPF instead of reading /proc (--help\: which mode costs what)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'--cgroup=[Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in \[default\: memtrace'\''s own cgroup when a limit below the machine'\''s RAM binds it (a container), else the machine\]]:PATH:_files' \
'--json[Print one JSON object instead of text]' \
'(--cgroup)--machine[Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(swap)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_memtrace__subcmd__swap_commands" \
"*::: :->swap" \
&& ret=0

    case $state in
    (swap)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:memtrace-swap-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
'--cgroup=[Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in \[default\: memtrace'\''s own cgroup when a limit below the machine'\''s RAM binds it (a container), else the machine\]]:PATH:_files' \
'--json[Print one JSON object instead of text]' \
'(--cgroup)--machine[Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(setup)
_arguments "${_arguments_options[@]}" : \
'--path=[Where the swap file goes]:P:_files' \
'--fstab=[The fstab to edit (for tests)]:FSTAB:_files' \
'--persist[Also add a line to /etc/fstab so the swap file is enabled at boot (idempotent)]' \
'--dry-run[Run the checks and say what would be done, change nothing (no root needed)]' \
'--machine[Set swap up for the whole machine even though memtrace runs in a memory-limited cgroup (a privileged container that may change the host)]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
'::size -- Size of the swap file\: 16G, 512MiB, 64M, … (binary units):_default' \
&& ret=0
;;
(remove)
_arguments "${_arguments_options[@]}" : \
'--path=[The swap file to remove]:P:_files' \
'--fstab=[The fstab to edit (for tests)]:FSTAB:_files' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_memtrace__subcmd__swap__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:memtrace-swap-help-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(setup)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(remove)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(doctor)
_arguments "${_arguments_options[@]}" : \
'--cgroup=[Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in \[default\: memtrace'\''s own cgroup when a limit below the machine'\''s RAM binds it (a container), else the machine\]]:PATH:_files' \
'--root=[Read ROOT/proc, ROOT/sys and ROOT/etc instead of the host'\''s (for tests)]:ROOT:_files' \
'--json[Print one JSON object instead of text]' \
'--apply[Apply the safe, reversible fixes (sysctls, sshd'\''s oom_score_adj) and print old → new]' \
'(--cgroup)--machine[Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(clean)
_arguments "${_arguments_options[@]}" : \
'*--temp=[Delete files older than --older-than below DIR (several allowed). Never follows symlinks, never leaves DIR or its filesystem, keeps files any process has open]:DIR:_files' \
'--older-than=[Minimum age of what --temp deletes\: 30m, 1h, 12h (at most a day)]:D:_default' \
'--drop-caches[sync, then drop the page cache (writes 1 to /proc/sys/vm/drop_caches; root)]' \
'--dry-run[Say what would be freed, change nothing]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(run)
_arguments "${_arguments_options[@]}" : \
'-o+[Where the trace goes (default\: memtrace-run-<unix time>.mtrace here)]:FILE:_files' \
'--out=[Where the trace goes (default\: memtrace-run-<unix time>.mtrace here)]:FILE:_files' \
'--config=[Config file\: its \`\[run\]\` table sets \`interval\` and \`env\` (see README); other tables (the guard'\''s) are read by their owners]:F:_files' \
'-i+[Sampling interval between marks (default 200ms, or the config'\''s)]:INTERVAL:_default' \
'--interval=[Sampling interval between marks (default 200ms, or the config'\''s)]:INTERVAL:_default' \
'--stage-regex=[Turn the pipeline'\''s output lines into stage marks\: a regex with a \`stage\` group and optionally a \`clip\` group, e.g. '\''clip (?P<clip>\\d+)/\\d+\: (?P<stage>\\w+)'\'']:RE:_default' \
'--cgroup=[Measure against this memory cgroup (its usage against its limit, its PSI) instead of the one memtrace runs in \[default\: memtrace'\''s own cgroup when a limit below the machine'\''s RAM binds it (a container), else the machine\]]:PATH:_files' \
'--memory-high=[Throttle and reclaim the pipeline above SIZE (e.g. 12G)\: the cgroup v2 \`memory.high\` of the cgroup the run makes for it. cgroup v1 has no memory.high\: refused there]:SIZE:_default' \
'--memory-max=[Limit the pipeline to SIZE (e.g. 16G)\: the kernel OOM-kills inside the run'\''s own cgroup above it, nothing else on the machine is touched (\`memory.max\`, v1 \`memory.limit_in_bytes\`; no swap on v2)]:SIZE:_default' \
'--quiet[Do not print a \`\[Memory\]\` line per stage]' \
'--require-ebpf[Refuse to start without eBPF instead of reading /proc (--help\: which mode costs what)]' \
'(--cgroup)--machine[Measure against the whole machine (MemTotal) even when memtrace runs in a memory-limited cgroup (a container)]' \
'--no-scope[On cgroup v2 under systemd, do not run in a transient systemd scope of the run'\''s own (\`memtrace-run-PID.scope\`, in the slice memtrace was started from)\: make the pipeline'\''s cgroup at the root of the hierarchy instead]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
'*::command -- The pipeline to run, after `--`:_default' \
&& ret=0
;;
(record)
_arguments "${_arguments_options[@]}" : \
'-o+[The trace file to write]:FILE:_files' \
'--out=[The trace file to write]:FILE:_files' \
'()--pid=[Trace the process tree of this running process (until it ends, or Ctrl-C)]:PID:_default' \
'-i+[Sampling interval]:INTERVAL:_default' \
'--interval=[Sampling interval]:INTERVAL:_default' \
'--require-ebpf[Refuse to start without eBPF instead of reading /proc (--help\: which mode costs what)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
'*::command -- A command to start and trace, after `--` (without it and --pid\: every process, until Ctrl-C):_default' \
&& ret=0
;;
(mark)
_arguments "${_arguments_options[@]}" : \
'--clip=[The clip it works on]:CLIP:_default' \
'(--clip)--end[End the current stage instead]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
'::stage -- The stage that begins now (the one before ends):_default' \
&& ret=0
;;
(report)
_arguments "${_arguments_options[@]}" : \
'--html=[Also write a self-contained HTML report (chart + tables) to this file]:OUT:_files' \
'--json[Print the report as one JSON object]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':file -- The trace (`memtrace record -o FILE` or `memtrace run --out FILE`):_files' \
&& ret=0
;;
(export)
_arguments "${_arguments_options[@]}" : \
'-f+[Output format\: perfetto, csv or jsonl]:FORMAT:_default' \
'--format=[Output format\: perfetto, csv or jsonl]:FORMAT:_default' \
'-o+[Where to write it]:OUT:_files' \
'--out=[Where to write it]:OUT:_files' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':file -- The trace to export:_files' \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
'--clips=[Clips the synthetic pipeline processes]:CLIPS:_default' \
'-o+[Where the trace goes (default\: memtrace-demo.mtrace in the temp directory)]:FILE:_files' \
'--out=[Where the trace goes (default\: memtrace-demo.mtrace in the temp directory)]:FILE:_files' \
'--html=[Also write the HTML report here]:OUT:_files' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(demo-pipeline)
_arguments "${_arguments_options[@]}" : \
'--clips=[Clips to process]:CLIPS:_default' \
'--worker-mib=[Act as the render worker\: hold this many MiB briefly, then exit]:WORKER_MIB:_default' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(load-tracer)
_arguments "${_arguments_options[@]}" : \
'--fd=[The inherited socket to send the descriptors on]:FD:_default' \
'--rare-events[Only the programs of rare events]' \
'--fault-hook[Also the per-fault counter]' \
'--exit-memory[Every exit reports its memory (\[\`TracerOptions\:\:exit_memory\`\])]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':shell -- The shell:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(man-pages)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':dir -- Where the pages go (created if missing):_files' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_memtrace__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:memtrace-help-command-$line[1]:"
        case $line[1] in
            (guard)
_arguments "${_arguments_options[@]}" : \
":: :_memtrace__subcmd__help__subcmd__guard_commands" \
"*::: :->guard" \
&& ret=0

    case $state in
    (guard)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:memtrace-help-guard-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(resume)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(kill)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(keep)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(top)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(swap)
_arguments "${_arguments_options[@]}" : \
":: :_memtrace__subcmd__help__subcmd__swap_commands" \
"*::: :->swap" \
&& ret=0

    case $state in
    (swap)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:memtrace-help-swap-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(setup)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(remove)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(doctor)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(clean)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(run)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(record)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(mark)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(report)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(export)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(demo-pipeline)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(load-tracer)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(man-pages)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_memtrace_commands] )) ||
_memtrace_commands() {
    local commands; commands=(
'guard:Act on memory pressure\: warn, reclaim, suspend/resume, kill the growing tree (root)' \
'top:Live per-process memory table sorted by growth (needs root\: loads eBPF)' \
'status:Memory status\: RAM, swap, PSI and the top processes by RSS (no root needed)' \
'swap:Swap\: status against the recommendation for this RAM, setup and removal of a swap file' \
'doctor:Host checks (swap, sysctls, THP, PSI, BTF, tracepoints, NVML, sshd, guard) with fixes' \
'clean:Free memory\: drop the page cache, delete old temp files; reports what each step freed' \
'run:Run a pipeline under tracing\: swap check, memory-friendly env, stage marks, \`\[Memory\]\` lines, a trace file, the child'\''s exit code (needs root\: loads eBPF)' \
'record:Record a trace of a command, a running process tree (--pid) or every process' \
'mark:Mark a stage of the pipeline running under \`memtrace run\` (STAGE \[--clip ID\] or --end)' \
'report:Which stage leaks, how much per clip, host or GPU\: the report of a trace' \
'export:Export a trace for Perfetto (ui.perfetto.dev), as CSV or as JSON lines' \
'demo:A synthetic multi-stage clip pipeline with one leaking stage, run and reported' \
'demo-pipeline:The pipeline \`memtrace demo\` runs' \
'load-tracer:Load and attach the eBPF programs for the guard, hand it the descriptors and exit (run by the guard itself, never by hand)' \
'completions:Print shell completions (bash, zsh, fish, elvish, powershell) to stdout' \
'man-pages:Write the man pages (memtrace.1 and one per subcommand) into DIR (\`cargo xtask install\`)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'memtrace commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__clean_commands] )) ||
_memtrace__subcmd__clean_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace clean commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__completions_commands] )) ||
_memtrace__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace completions commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__demo_commands] )) ||
_memtrace__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace demo commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__demo-pipeline_commands] )) ||
_memtrace__subcmd__demo-pipeline_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace demo-pipeline commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__doctor_commands] )) ||
_memtrace__subcmd__doctor_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace doctor commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__export_commands] )) ||
_memtrace__subcmd__export_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace export commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard_commands] )) ||
_memtrace__subcmd__guard_commands() {
    local commands; commands=(
'status:What the running guard of this scope holds\: since when, why, the memory it holds' \
'resume:Resume a held tree (ID\: its root'\''s pid, as \`status\` shows it)' \
'kill:Kill a held tree\: SIGTERM, then SIGKILL after the configured grace' \
'keep:Keep a held tree held\: the guard will not resume it by itself' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'memtrace guard commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__help_commands] )) ||
_memtrace__subcmd__guard__subcmd__help_commands() {
    local commands; commands=(
'status:What the running guard of this scope holds\: since when, why, the memory it holds' \
'resume:Resume a held tree (ID\: its root'\''s pid, as \`status\` shows it)' \
'kill:Kill a held tree\: SIGTERM, then SIGKILL after the configured grace' \
'keep:Keep a held tree held\: the guard will not resume it by itself' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'memtrace guard help commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__help__subcmd__help_commands] )) ||
_memtrace__subcmd__guard__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace guard help help commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__help__subcmd__keep_commands] )) ||
_memtrace__subcmd__guard__subcmd__help__subcmd__keep_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace guard help keep commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__help__subcmd__kill_commands] )) ||
_memtrace__subcmd__guard__subcmd__help__subcmd__kill_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace guard help kill commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__help__subcmd__resume_commands] )) ||
_memtrace__subcmd__guard__subcmd__help__subcmd__resume_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace guard help resume commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__help__subcmd__status_commands] )) ||
_memtrace__subcmd__guard__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace guard help status commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__keep_commands] )) ||
_memtrace__subcmd__guard__subcmd__keep_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace guard keep commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__kill_commands] )) ||
_memtrace__subcmd__guard__subcmd__kill_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace guard kill commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__resume_commands] )) ||
_memtrace__subcmd__guard__subcmd__resume_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace guard resume commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__guard__subcmd__status_commands] )) ||
_memtrace__subcmd__guard__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace guard status commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help_commands] )) ||
_memtrace__subcmd__help_commands() {
    local commands; commands=(
'guard:Act on memory pressure\: warn, reclaim, suspend/resume, kill the growing tree (root)' \
'top:Live per-process memory table sorted by growth (needs root\: loads eBPF)' \
'status:Memory status\: RAM, swap, PSI and the top processes by RSS (no root needed)' \
'swap:Swap\: status against the recommendation for this RAM, setup and removal of a swap file' \
'doctor:Host checks (swap, sysctls, THP, PSI, BTF, tracepoints, NVML, sshd, guard) with fixes' \
'clean:Free memory\: drop the page cache, delete old temp files; reports what each step freed' \
'run:Run a pipeline under tracing\: swap check, memory-friendly env, stage marks, \`\[Memory\]\` lines, a trace file, the child'\''s exit code (needs root\: loads eBPF)' \
'record:Record a trace of a command, a running process tree (--pid) or every process' \
'mark:Mark a stage of the pipeline running under \`memtrace run\` (STAGE \[--clip ID\] or --end)' \
'report:Which stage leaks, how much per clip, host or GPU\: the report of a trace' \
'export:Export a trace for Perfetto (ui.perfetto.dev), as CSV or as JSON lines' \
'demo:A synthetic multi-stage clip pipeline with one leaking stage, run and reported' \
'demo-pipeline:The pipeline \`memtrace demo\` runs' \
'load-tracer:Load and attach the eBPF programs for the guard, hand it the descriptors and exit (run by the guard itself, never by hand)' \
'completions:Print shell completions (bash, zsh, fish, elvish, powershell) to stdout' \
'man-pages:Write the man pages (memtrace.1 and one per subcommand) into DIR (\`cargo xtask install\`)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'memtrace help commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__clean_commands] )) ||
_memtrace__subcmd__help__subcmd__clean_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help clean commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__completions_commands] )) ||
_memtrace__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help completions commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__demo_commands] )) ||
_memtrace__subcmd__help__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help demo commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__demo-pipeline_commands] )) ||
_memtrace__subcmd__help__subcmd__demo-pipeline_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help demo-pipeline commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__doctor_commands] )) ||
_memtrace__subcmd__help__subcmd__doctor_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help doctor commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__export_commands] )) ||
_memtrace__subcmd__help__subcmd__export_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help export commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__guard_commands] )) ||
_memtrace__subcmd__help__subcmd__guard_commands() {
    local commands; commands=(
'status:What the running guard of this scope holds\: since when, why, the memory it holds' \
'resume:Resume a held tree (ID\: its root'\''s pid, as \`status\` shows it)' \
'kill:Kill a held tree\: SIGTERM, then SIGKILL after the configured grace' \
'keep:Keep a held tree held\: the guard will not resume it by itself' \
    )
    _describe -t commands 'memtrace help guard commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__guard__subcmd__keep_commands] )) ||
_memtrace__subcmd__help__subcmd__guard__subcmd__keep_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help guard keep commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__guard__subcmd__kill_commands] )) ||
_memtrace__subcmd__help__subcmd__guard__subcmd__kill_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help guard kill commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__guard__subcmd__resume_commands] )) ||
_memtrace__subcmd__help__subcmd__guard__subcmd__resume_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help guard resume commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__guard__subcmd__status_commands] )) ||
_memtrace__subcmd__help__subcmd__guard__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help guard status commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__help_commands] )) ||
_memtrace__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help help commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__load-tracer_commands] )) ||
_memtrace__subcmd__help__subcmd__load-tracer_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help load-tracer commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__man-pages_commands] )) ||
_memtrace__subcmd__help__subcmd__man-pages_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help man-pages commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__mark_commands] )) ||
_memtrace__subcmd__help__subcmd__mark_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help mark commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__record_commands] )) ||
_memtrace__subcmd__help__subcmd__record_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help record commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__report_commands] )) ||
_memtrace__subcmd__help__subcmd__report_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help report commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__run_commands] )) ||
_memtrace__subcmd__help__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help run commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__status_commands] )) ||
_memtrace__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help status commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__swap_commands] )) ||
_memtrace__subcmd__help__subcmd__swap_commands() {
    local commands; commands=(
'status:Active swap, its use, and the recommendation for this much RAM (no root needed)' \
'setup:Create and enable a swap file (root). Running it again is a no-op' \
'remove:Disable and delete a swap file and its fstab line (root)' \
    )
    _describe -t commands 'memtrace help swap commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__swap__subcmd__remove_commands] )) ||
_memtrace__subcmd__help__subcmd__swap__subcmd__remove_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help swap remove commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__swap__subcmd__setup_commands] )) ||
_memtrace__subcmd__help__subcmd__swap__subcmd__setup_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help swap setup commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__swap__subcmd__status_commands] )) ||
_memtrace__subcmd__help__subcmd__swap__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help swap status commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__help__subcmd__top_commands] )) ||
_memtrace__subcmd__help__subcmd__top_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace help top commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__load-tracer_commands] )) ||
_memtrace__subcmd__load-tracer_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace load-tracer commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__man-pages_commands] )) ||
_memtrace__subcmd__man-pages_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace man-pages commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__mark_commands] )) ||
_memtrace__subcmd__mark_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace mark commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__record_commands] )) ||
_memtrace__subcmd__record_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace record commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__report_commands] )) ||
_memtrace__subcmd__report_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace report commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__run_commands] )) ||
_memtrace__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace run commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__status_commands] )) ||
_memtrace__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace status commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__swap_commands] )) ||
_memtrace__subcmd__swap_commands() {
    local commands; commands=(
'status:Active swap, its use, and the recommendation for this much RAM (no root needed)' \
'setup:Create and enable a swap file (root). Running it again is a no-op' \
'remove:Disable and delete a swap file and its fstab line (root)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'memtrace swap commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__swap__subcmd__help_commands] )) ||
_memtrace__subcmd__swap__subcmd__help_commands() {
    local commands; commands=(
'status:Active swap, its use, and the recommendation for this much RAM (no root needed)' \
'setup:Create and enable a swap file (root). Running it again is a no-op' \
'remove:Disable and delete a swap file and its fstab line (root)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'memtrace swap help commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__swap__subcmd__help__subcmd__help_commands] )) ||
_memtrace__subcmd__swap__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace swap help help commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__swap__subcmd__help__subcmd__remove_commands] )) ||
_memtrace__subcmd__swap__subcmd__help__subcmd__remove_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace swap help remove commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__swap__subcmd__help__subcmd__setup_commands] )) ||
_memtrace__subcmd__swap__subcmd__help__subcmd__setup_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace swap help setup commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__swap__subcmd__help__subcmd__status_commands] )) ||
_memtrace__subcmd__swap__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace swap help status commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__swap__subcmd__remove_commands] )) ||
_memtrace__subcmd__swap__subcmd__remove_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace swap remove commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__swap__subcmd__setup_commands] )) ||
_memtrace__subcmd__swap__subcmd__setup_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace swap setup commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__swap__subcmd__status_commands] )) ||
_memtrace__subcmd__swap__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace swap status commands' commands "$@"
}
(( $+functions[_memtrace__subcmd__top_commands] )) ||
_memtrace__subcmd__top_commands() {
    local commands; commands=()
    _describe -t commands 'memtrace top commands' commands "$@"
}

if [ "$funcstack[1]" = "_memtrace" ]; then
    _memtrace "$@"
else
    compdef _memtrace memtrace
fi
