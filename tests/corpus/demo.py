# memtrace's own demo pipeline (socket marks): composite keeps 24 MiB per clip, matte peaks at
# 160 MiB and frees it, render starts a worker.
# expect decode no_leak
# expect matte no_leak
# expect render no_leak
# expect composite leak 24
# expect encode no_leak
# expect tree leak 24
import os

binary = os.environ["MEMTRACE_BIN"]
os.execv(binary, [binary, "demo-pipeline", "--clips", "6"])
