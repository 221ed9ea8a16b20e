# A 600 MiB process whose stages churn temporaries of random size (allocator noise); infer
# keeps 3 MiB per clip.
# expect decode no_leak
# expect infer leak 3
# expect encode no_leak
# expect tree leak 3
import random

from common import finish, mark, pause, take

CLIPS = 8
model = take(600)
kept = []
rng = random.Random()
for clip in range(1, CLIPS + 1):
    for stage in ("decode", "infer", "encode"):
        mark(stage, clip, CLIPS)
        pause(0.04)
        scratch = take(rng.randint(5, 40))
        small = [bytes(rng.randint(16, 4096)) for _ in range(rng.randint(100, 3000))]
        pause(0.04)
        if stage == "infer":
            kept.append(take(3))
        del scratch, small
        pause(0.04)
finish()
