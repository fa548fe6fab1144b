"""python docs/perf/wakeup_cost.py [N] — what one process waking another costs on this
machine: N ping-pongs of a 50-byte message over a unix socketpair between two processes
(each side blocks in recv until the other sends), with the wall time per round trip and
each side's CPU per round trip; then a send nobody waits for, for comparison. Every hop of
a gift between processes (client → gateway → Valkey → worker → Valkey → gateway → client)
pays one such wake-up when the rate is too low for batches to share them. Measurement only.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import time


def main(n: int) -> None:
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echoing side
        a.close()
        for _ in range(n):
            b.send(b.recv(100))
        os._exit(0)
    b.close()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        a.send(b"x" * 50)
        a.recv(100)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    os.waitpid(pid, 0)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = child.ru_utime + child.ru_stime
    print(f"ping-pong: {wall / n * 1e6:.1f} µs a round trip; CPU per round trip "
          f"{cpu / n * 1e6:.1f} µs (sender), {child_cpu / n * 1e6:.1f} µs (echo)")
    x, y = socket.socketpair()
    t0 = time.perf_counter()
    for i in range(n):
        x.send(b"x" * 50)
        if i % 100 == 99:
            y.recv(1 << 16)
    print(f"a send nobody waits for: {(time.perf_counter() - t0) / n * 1e6:.2f} µs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
