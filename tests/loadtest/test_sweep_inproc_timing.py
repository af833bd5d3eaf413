"""In-process timing: a point in blocks of runs states the spread of its repeats (and takes more
blocks while they disagree), and the CPU clock counts work, not waiting."""

from __future__ import annotations

import itertools
import time

from loadtest.sweep.inproc import MAX_SPREAD, Timing, time_blocks, time_runs


def test_blocks_give_a_p50_each_and_more_of_them_while_they_spread():
    steady = time_blocks(lambda: time.sleep(0.002), blocks=3, repeats=9, budget_s=0.03, warmup=1)
    assert len(steady.block_p50s) == 3 and len(steady.seconds) >= 9
    assert steady.spread is not None and steady.spread < MAX_SPREAD
    slow = itertools.cycle([0.001] * 3 + [0.004] * 3)  # every other block four times slower
    noisy = time_blocks(lambda: time.sleep(next(slow)), blocks=2, repeats=6, budget_s=0.001, warmup=0)
    assert (
        len(noisy.block_p50s) == 4 and noisy.spread is not None and noisy.spread > 1
    )  # up to twice the blocks
    assert Timing([0.1], 0).spread is None  # one block: no spread to state


def test_the_cpu_clock_counts_work_not_waiting():
    wall = time_runs(lambda: time.sleep(0.02), repeats=3, budget_s=0, warmup=0, min_repeats=3)
    cpu = time_runs(
        lambda: time.sleep(0.02), repeats=3, budget_s=0, warmup=0, min_repeats=3, tick=time.process_time
    )
    assert min(wall) >= 0.02 and max(cpu) < 0.01
