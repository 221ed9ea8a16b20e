# infer starts to keep 5 MiB per clip from clip 6 on, 100 ms into the stage (an allocation 30 ms
# after a printed mark was charged to the stage before in 4 of 5 runs while the machine was
# busy: a read-time mark lags by that much under load).
# expect decode no_leak
# expect infer leak 5
# expect encode no_leak
# expect tree leak 5
from common import finish, mark, pause, take

CLIPS = 10
kept = []
for clip in range(1, CLIPS + 1):
    mark("decode", clip, CLIPS)
    pause(0.06)
    mark("infer", clip, CLIPS)
    pause(0.1)
    if clip >= 6:
        kept.append(take(5))
    pause(0.05)
    mark("encode", clip, CLIPS)
    pause(0.06)
finish()
