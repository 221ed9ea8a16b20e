# A 600 MiB process whose stages churn temporaries of random size (33-64 MiB arrays and
# thousands of small objects); infer keeps 3 MiB per clip.
# expect decode no_leak
# expect infer leak 3
# expect encode no_leak
# expect tree leak 3
import random

from common import finish, mark, pause, take

CLIPS = 12
model = take(600)
kept = []
rng = random.Random()
for clip in range(1, CLIPS + 1):
    for stage in ("decode", "infer", "encode"):
        mark(stage, clip, CLIPS)
        pause(0.04)
        scratch = take(rng.randint(33, 64))
        small = [bytes(rng.randint(16, 512)) for _ in range(rng.randint(100, 2000))]
        pause(0.04)
        if stage == "infer":
            kept.append(take(3))
        del scratch, small
        pause(0.04)
finish()
