# infer keeps one 16 MiB tensor per clip on the GPU, and no host memory. No GPU is needed: the
# pipeline writes what it holds on the "GPU" to the replay file memtrace reads
# ($MEMTRACE_GPU_REPLAY, the replay GPU source).
# expect decode no_leak
# expect infer no_leak
# expect encode no_leak
# expect decode gpu_no_leak
# expect infer gpu_leak 16
# expect encode gpu_no_leak
# expect tree gpu_leak 16
import os

from common import CLIPS, finish, mark, pause, take

REPLAY = os.environ["MEMTRACE_GPU_REPLAY"]
held = 512 << 20  # the model, on the GPU before clip 1


def on_gpu(nbytes):
    with open(REPLAY, "a") as f:
        f.write(f"0 {os.getpid()} {nbytes}\n")


on_gpu(held)
for clip in range(1, CLIPS + 1):
    mark("decode", clip)
    pause(0.06)
    scratch = take(20)
    pause(0.06)
    del scratch
    mark("infer", clip)
    pause(0.06)
    held += 16 << 20
    on_gpu(held)
    pause(0.06)
    mark("encode", clip)
    pause()
finish()
