"""A worker's SIGTERM handler must not wait for a lock the interrupted main thread holds.

Python runs a signal handler in the main thread between two bytecodes. The worker's stop path
wakes waiters, which takes locks (its Events', the backend's: PostgreSQL's LISTEN relay holds a
plain ``threading.Lock`` while it registers a waiter); run in the handler, it waited forever for
a lock its own thread held, and ``errands worker -p 2`` then hung on shutdown until the
supervisor's kill margin ran out (seen as a flaky S12 teardown on PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A memory backend whose wait() raises SIGTERM while holding a non-reentrant lock that notify()
# takes too: the window a real signal hits now and then, hit every time.
SCRIPT = textwrap.dedent('''
    import signal
    import threading

    from errands import Errands

    app = Errands("memory://", poll_interval=0.01)
    backend = app.backend
    guard = threading.Lock()
    wait, notify = backend.wait, backend.notify
    raised = []

    def wait_holding_the_lock(queues, timeout):
        with guard:
            if not raised:
                raised.append(True)
                signal.raise_signal(signal.SIGTERM)  # Python runs the handler right here
        wait(queues, timeout)

    def notify_taking_the_lock():
        with guard:
            pass
        notify()

    backend.wait, backend.notify = wait_holding_the_lock, notify_taking_the_lock
    app.run_worker(concurrency=1, grace=0.5)
    assert raised
    print("stopped")
''')


def test_sigterm_landing_while_the_main_thread_holds_a_lock_still_stops_the_worker() -> None:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"the worker hung after SIGTERM\n{output.decode(errors='replace')}") from None
    text = output.decode(errors="replace")
    assert process.returncode == 0 and "stopped" in text, text
