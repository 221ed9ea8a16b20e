# infer fills a 100 MiB model cache on clip 1 and keeps it; every stage uses 30 MiB for a moment.
# Nothing grows per clip.
# expect decode no_leak
# expect infer no_leak
# expect encode no_leak
# expect tree no_leak
from common import CLIPS, finish, mark, pause, take

cache = None
for clip in range(1, CLIPS + 1):
    for stage in ("decode", "infer", "encode"):
        mark(stage, clip)
        if stage == "infer" and cache is None:
            cache = take(100)
        pause(0.06)
        scratch = take(30)
        pause(0.06)
        del scratch
finish()
