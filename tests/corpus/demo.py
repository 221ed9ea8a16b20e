# memtrace's own demo pipeline, marked through the socket only (its printed lines go to
# /dev/null, or --stage-regex would mark every stage twice): composite keeps 24 MiB per clip,
# matte peaks at 160 MiB and frees it, render starts a worker.
# expect decode no_leak
# expect matte no_leak
# expect render no_leak
# expect composite leak 24
# expect encode no_leak
# expect tree leak 24
import os

binary = os.environ["MEMTRACE_BIN"]
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
os.execv(binary, [binary, "demo-pipeline", "--clips", "6"])
