#!/usr/bin/env bash
# GPU check of a built memtrace on a machine with an NVIDIA GPU, the driver and PyTorch (CUDA):
# no network, no cargo, only the binary, bash and python3.
#
#   sudo bash scripts/gpu-check.sh path/to/memtrace     (or: cargo xtask gpu-check)
#
# A python3 child allocates GPU_GIB GiB on the GPU (default 2) and PINNED_GIB GiB of pinned host
# memory (default 1), touching both. Then:
#   1. `memtrace top --once --json` must list the child with gpu_bytes ≈ GPU_GIB GiB (at least
#      that, at most GPU_GIB + SLACK_GIB for the CUDA context) and its pinned memory in its RSS
#      (RSS ≥ the RSS before pinning + 90 % of PINNED_GIB);
#   2. `memtrace status --json` must list the GPU (used ≥ GPU_GIB GiB of a non-zero total) and the
#      child in `gpu_processes` with the same GPU memory and the pinned memory in its RSS;
#   3. both say "GPU: NVML sees" once on stderr and never "no NVML";
#   4. where nvidia-smi exists, its figure for the child agrees within 64 MiB;
#   5. the mean cost of one NVML sample is measured (memtrace top at 4 Hz for 5 s, debug log).
# Exit status: 0 all checks passed, 1 a check failed, 2 the machine cannot run the check.
set -uo pipefail

MEMTRACE=${1:-}
GPU_GIB=${GPU_GIB:-2}
PINNED_GIB=${PINNED_GIB:-1}
SLACK_GIB=${SLACK_GIB:-2}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-180}

say() { printf 'gpu-check: %s\n' "$*" >&2; }
unusable() { say "cannot run: $*"; exit 2; }

[[ -n $MEMTRACE ]] || unusable "usage: bash scripts/gpu-check.sh path/to/memtrace"
[[ -x $MEMTRACE ]] || unusable "$MEMTRACE is not an executable file"
MEMTRACE=$(readlink -f "$MEMTRACE")
[[ $(id -u) -eq 0 ]] || unusable "must run as root (memtrace top loads eBPF programs)"
command -v python3 >/dev/null || unusable "python3 not found"

WORK=$(mktemp -d /tmp/memtrace-gpu-check.XXXXXX) || unusable "mktemp failed"
ALLOC_PID=
cleanup() {
    if [[ -n $ALLOC_PID ]]; then
        kill "$ALLOC_PID" 2>/dev/null
        wait "$ALLOC_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say "memtrace: $MEMTRACE ($("$MEMTRACE" --version 2>&1))"
if command -v nvidia-smi >/dev/null; then
    say "GPUs: $(nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv,noheader | paste -sd ';')"
fi

# The allocating child: writes "ready <rss before pinning, bytes>" to $WORK/ready, then sleeps.
cat >"$WORK/alloc.py" <<'PY'
import os, sys, time
gpu_gib, pinned_gib, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
try:
    import torch
except ImportError as err:
    print(f"no torch: {err}", file=sys.stderr); sys.exit(3)
if not torch.cuda.is_available():
    print("torch sees no CUDA device", file=sys.stderr); sys.exit(3)

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

dev = torch.empty(gpu_gib << 30, dtype=torch.uint8, device="cuda")
dev.fill_(1)
torch.cuda.synchronize()
before = rss()
host = torch.empty(pinned_gib << 30, dtype=torch.uint8, pin_memory=True)
host.fill_(1)
assert host.is_pinned()
with open(ready + ".tmp", "w") as f:
    f.write(f"ready {before} {torch.cuda.memory_reserved()} {torch.cuda.get_device_name(0)}\n")
os.rename(ready + ".tmp", ready)
time.sleep(3600)
PY

python3 "$WORK/alloc.py" "$GPU_GIB" "$PINNED_GIB" "$WORK/ready" 2>"$WORK/alloc.err" &
ALLOC_PID=$!
for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
    [[ -e $WORK/ready ]] && break
    if ! kill -0 "$ALLOC_PID" 2>/dev/null; then
        wait "$ALLOC_PID"
        rc=$?
        ALLOC_PID=
        [[ $rc -eq 3 ]] && unusable "$(cat "$WORK/alloc.err")"
        say "the allocating python3 failed (exit $rc):"
        cat "$WORK/alloc.err" >&2
        exit 1
    fi
    sleep 0.1
done
[[ -e $WORK/ready ]] || { say "the allocating python3 was not ready within ${READY_TIMEOUT_S}s"; exit 1; }
read -r _ RSS_BEFORE RESERVED DEVICE_NAME <"$WORK/ready"
say "python3 pid $ALLOC_PID holds ${GPU_GIB} GiB on $DEVICE_NAME (torch reserved $RESERVED B) and ${PINNED_GIB} GiB pinned (RSS before pinning $RSS_BEFORE B)"

SMI_BYTES=
if command -v nvidia-smi >/dev/null; then
    SMI_MIB=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits |
        awk -F', *' -v pid="$ALLOC_PID" '$1 == pid { s += $2 } END { if (s) print s }')
    [[ -n $SMI_MIB ]] && SMI_BYTES=$((SMI_MIB << 20))
    say "nvidia-smi: ${SMI_MIB:-nothing} MiB for pid $ALLOC_PID"
fi

"$MEMTRACE" top --once --json --interval 1 >"$WORK/top.json" 2>"$WORK/top.err"
TOP_RC=$?
"$MEMTRACE" status --json >"$WORK/status.json" 2>"$WORK/status.err"
STATUS_RC=$?
# The cost of one NVML sample: top at 4 Hz for 5 s with memtrace's GPU debug log.
RUST_LOG=info,memtrace::gpu=debug,memtrace::top=debug \
    timeout -s TERM 5 "$MEMTRACE" top --json --interval 0.25 >/dev/null 2>"$WORK/cost.err"

python3 - "$WORK" "$ALLOC_PID" "$GPU_GIB" "$PINNED_GIB" "$SLACK_GIB" "$RSS_BEFORE" \
    "$TOP_RC" "$STATUS_RC" "${SMI_BYTES:-0}" <<'PY'
import json, re, sys
work, pid, gpu_gib, pinned_gib, slack_gib, rss_before, top_rc, status_rc, smi = sys.argv[1:]
pid, rss_before, smi = int(pid), int(rss_before), int(smi)
GIB, MIB = 1 << 30, 1 << 20
gpu_min, gpu_max = int(gpu_gib) * GIB, (int(gpu_gib) + int(slack_gib)) * GIB
rss_min = rss_before + int(pinned_gib) * GIB * 9 // 10
failed = []

def check(ok, what):
    print(f"gpu-check: {'PASS' if ok else 'FAIL'} {what}", file=sys.stderr)
    if not ok:
        failed.append(what)

def gib(b):
    return "none" if b is None else f"{b / GIB:.2f} GiB"

def read(name):
    with open(f"{work}/{name}") as f:
        return f.read()

for name, rc in (("top", top_rc), ("status", status_rc)):
    err = read(f"{name}.err")
    check(rc == "0", f"memtrace {name} exits 0 (got {rc}; stderr {err.strip()!r})")
    sees = [l for l in err.splitlines() if "GPU: NVML sees" in l]
    check(len(sees) == 1 and "no NVML" not in err, f"{name}: one 'GPU: NVML sees' line ({sees})")

try:
    procs = json.loads(read("top.json"))
except ValueError as e:
    procs = []
    check(False, f"top --once --json printed JSON ({e})")
me = next((p for p in procs if p.get("pid") == pid and not p.get("exited")), None)
check(me is not None, f"top lists pid {pid}")
if me:
    g, r = me.get("gpu_bytes"), me.get("rss_bytes", 0)
    check(g is not None and gpu_min <= g <= gpu_max,
          f"top: gpu_bytes of {pid} = {gib(g)}, want {gib(gpu_min)}..{gib(gpu_max)}")
    check(r >= rss_min, f"top: rss_bytes of {pid} = {gib(r)} (anon {gib(me.get('anon_bytes'))}, "
          f"shmem {gib(me.get('shmem_bytes'))}), want ≥ {gib(rss_min)} (pinned memory resident)")
    if smi:
        check(g is not None and abs(g - smi) <= 64 * MIB,
              f"top agrees with nvidia-smi: {gib(g)} vs {gib(smi)}")

try:
    status = json.loads(read("status.json"))
except ValueError as e:
    status = {}
    check(False, f"status --json printed JSON ({e})")
gpus = status.get("gpus") or []
check(len(gpus) > 0 and all(d.get("total_bytes", 0) > 0 for d in gpus),
      f"status lists GPUs with totals: {[(d.get('index'), d.get('name')) for d in gpus]}")
check(sum(d.get("used_bytes", 0) for d in gpus) >= gpu_min,
      f"status: GPUs used {gib(sum(d.get('used_bytes', 0) for d in gpus))} ≥ {gib(gpu_min)}")
held = next((p for p in status.get("gpu_processes") or [] if p.get("pid") == pid), None)
check(held is not None, f"status gpu_processes lists pid {pid}")
if held:
    g = held.get("gpu_bytes")
    check(g is not None and gpu_min <= g <= gpu_max, f"status: gpu_bytes of {pid} = {gib(g)}")
    check(held.get("rss_bytes", 0) >= rss_min,
          f"status: rss_bytes of {pid} = {gib(held.get('rss_bytes', 0))} ≥ {gib(rss_min)}")
in_top = next((p for p in status.get("top") or [] if p.get("pid") == pid), None)
if in_top:
    check(in_top.get("gpu_bytes") is not None, f"status top entry of {pid} carries gpu_bytes")

cost = read("cost.err")
costs = [float(m.group(1)) * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
         for m in re.finditer(r"GPU sample: .* in ([0-9.]+)(ns|µs|us|ms|s) \(", cost)]
if costs:
    costs.sort()
    print(f"gpu-check: NVML sample cost over {len(costs)} samples: mean {sum(costs) / len(costs):.3f} ms, "
          f"median {costs[len(costs) // 2]:.3f} ms, max {costs[-1]:.3f} ms", file=sys.stderr)
else:
    print(f"gpu-check: no NVML sample timings in the debug log: {cost.strip()[-500:]!r}", file=sys.stderr)

print(f"gpu-check: {'FAILED: ' + str(len(failed)) + ' check(s)' if failed else 'all checks passed'}",
      file=sys.stderr)
sys.exit(1 if failed else 0)
PY
