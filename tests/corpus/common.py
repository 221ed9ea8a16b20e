"""Shared by the corpus pipelines: stage marks printed on stdout (matched by the test's
--stage-regex), memory that is really resident (every page written), and the end mark."""
import os
import socket
import time

CLIPS = 6


def mark(stage, clip, clips=None, end="\n"):
    print(f"Processing clip {clip}/{clips or CLIPS}: {stage}", end=end, flush=True)


def take(mib):
    """mib MiB of anonymous memory, every page written."""
    b = bytearray(mib << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    return b


def pause(seconds=0.12):
    time.sleep(seconds)


def finish():
    """Ends the last stage (the socket protocol's `end`) so teardown is no stage's."""
    path = os.environ.get("MEMTRACE_MARK_SOCKET")
    if path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"end", path)
    pause(0.3)
    print("done", flush=True)
