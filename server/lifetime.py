"""Lifetimes: a child process that stops when the process that started it dies (even by
SIGKILL), and a periodic task that stops when it is cancelled (even when a library
swallowed the cancellation).

Linux's PR_SET_PDEATHSIG: the kernel sends the child a signal when its parent dies. It is
kept across exec (so it also holds for valkey-server), and it watches the parent *thread*
that forked the child: call it only for children started from the main thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl(2)


def stop_when_parent_dies(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """In the child: receive `sig` when `parent_pid` dies; if it already has, get it now.
    Elsewhere than Linux, nothing: the parent's own stop is the only one."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the line above
        os.kill(os.getpid(), sig)


def stop_if_cancelled() -> None:
    """In a periodic task's loop: raise CancelledError if the task was cancelled. redis-py's
    pipeline has been seen returning normally after a cancellation landed inside it (~1 in 7
    stops of `serve`), and a loop that then sleeps and runs on holds up the shutdown that
    waits for it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
