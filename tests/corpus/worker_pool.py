# A 400 MiB parent forks a pool of 3 workers, which share its pages copy-on-write; map hands
# each worker a task that uses 20 MiB for a moment. Nothing is kept, and the tree's peak must
# count the shared pages once (within 10 % of the cgroup's own peak).
# expect map no_leak
# expect reduce no_leak
# expect tree no_leak
# expect peak_within_cgroup 10
import multiprocessing
import time

from common import CLIPS, finish, mark, pause, take


def work(n):
    scratch = take(20)
    time.sleep(0.45)  # at least two 200 ms samples see all three workers' scratch
    return len(scratch) + n


if __name__ == "__main__":
    model = take(400)
    pool = multiprocessing.get_context("fork").Pool(3)
    pool.map(pause, [0.01] * 3)
    for clip in range(1, CLIPS + 1):
        mark("map", clip)
        pool.map(work, range(3), chunksize=1)
        pause(0.3)
        mark("reduce", clip)
        pause()
    finish()
    pool.close()
    pool.join()
