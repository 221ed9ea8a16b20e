# Progress bars redrawn with \r on stdout, between and right after the marks (no newline for a
# whole clip); infer keeps 4 MiB per clip.
# expect decode no_leak
# expect infer leak 4
# expect encode no_leak
# expect tree leak 4
import time

from common import CLIPS, finish, mark, take

kept = []


def chatter():
    for p in range(0, 101, 20):
        print(f"\r{p:3d}%|{'#' * (p // 10):10s}|", end="", flush=True)
        time.sleep(0.02)
    print("\r", end="", flush=True)


for clip in range(1, CLIPS + 1):
    mark("decode", clip, end="\r")
    chatter()
    mark("infer", clip, end="\r")
    chatter()
    kept.append(take(4))
    chatter()
    mark("encode", clip, end="\r")
    chatter()
print()
finish()
