"""Run `python -m mpp_server ARGS…` under cProfile timed by the thread's CPU clock.

`python -m bench.cpu_profile OUT.prof serve` is what `make bench BENCH_ARGS=--profile`
starts instead of a plain server. cProfile's default timer is the wall clock, which
charges a function for the time its process was not running: on this machine a socket
write that wakes the reader often lets the reader run before the writer returns, and a
wall-clock profile then shows `write` as the main cost (docs/performance.md). With
`time.thread_time` a function is charged only for CPU it used. Each timer read is a
system call (~0.7 µs here), so profiled servers run at a fraction of their speed: use
the profile for proportions, never for rates.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    sys.argv = ["mpp_server", *args]
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    try:
        runpy.run_module("mpp_server", run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
