# infer keeps 20 MiB of features for the next clip, whose decode frees them (a hand-off across
# clips), and leaks 3 MiB per clip besides.
# expect decode no_leak
# expect infer leak 3
# expect encode no_leak
# expect tree leak 3
from common import finish, mark, pause, take

CLIPS = 8
features = None
leak = []
for clip in range(1, CLIPS + 1):
    mark("decode", clip, CLIPS)
    pause(0.05)
    features = None
    pause(0.05)
    mark("infer", clip, CLIPS)
    pause(0.05)
    features = take(20)
    leak.append(take(3))
    pause(0.05)
    mark("encode", clip, CLIPS)
    pause(0.1)
finish()
