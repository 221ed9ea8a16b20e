# A stage that allocates 64 MiB the moment it prints its mark and frees it before the next
# one: the sample taken when memtrace reads the mark catches part of that allocation in the
# stage before (a hand-off the report nets out). Nothing is kept.
# expect load no_leak
# expect work no_leak
# expect save no_leak
# expect tree no_leak
from common import CLIPS, finish, mark, pause, take

for clip in range(1, CLIPS + 1):
    mark("load", clip)
    pause()
    mark("work", clip)
    buf = take(64)
    pause(0.15)
    del buf
    pause(0.05)
    mark("save", clip)
    pause()
finish()
