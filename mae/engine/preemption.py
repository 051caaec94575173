"""Stopping early without losing work: the signals schedulers send before a preemption or the time limit
are noted, the training loop finishes its step, saves, and the run ends with an exit code that means
"requeue me" (see Preempted)."""

import contextlib
import os
import signal
import sys
import threading

# What schedulers send before stopping a job: SIGTERM (SLURM's preemption and time limit, scancel,
# torchrun passing a stop on), SIGUSR1 (sbatch --signal's default) and SIGUSR2 (submitit's --signal
# since 1.5; older versions, and SUBMITIT_PREEMPT_SIGNAL, may name another); and SIGINT, Ctrl-C (or a notebook's
# interrupt), which stops the same way: the steps since the last save are kept. A second Ctrl-C quits at once.
STOP_SIGNALS = tuple(
    dict.fromkeys(
        [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2]
        + [getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)]
    )
)


class StopSignals:
    """While training, STOP_SIGNALS only note that a stop was asked for (the loop then finishes its step,
    saves and raises Preempted); on leaving, the previous handlers come back (submitit's, for instance)."""

    def __init__(self):
        self.received, self.previous = [], {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in self.received:  # Ctrl-C again: the user will not wait
            raise KeyboardInterrupt
        if signum == signal.SIGINT:
            print("\nCtrl-C: stopping after this step and saving it (Ctrl-C again to quit now, losing the steps since "
                  "the last save)", file=sys.stderr, flush=True)  # fmt: skip
        self.received.append(signum)

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        return False


class Preempted(Exception):
    """A stop signal ended training after a step, and checkpoint-last.pth holds that step.

    `exit_code` is 128 + the signal's number (143 for SIGTERM), what a shell reports for a process that the
    signal killed, chosen because every requeue path reads it as "stopped, not finished": SLURM requeues a
    preempted job itself (PreemptMode=REQUEUE) or when the job's hook calls `scontrol requeue` (submitit's,
    which mae.submit.Trainer passes the signal on to), whatever the code, but sites' RequeueExit lists,
    retry loops in job scripts and torchrun's --max_restarts all restart only a non-zero exit; 0 would
    mark the job COMPLETED and end it with its work undone.
    """

    def __init__(self, signals, step, path):
        self.signals = list(signals) or [signal.SIGTERM]
        self.exit_code = 128 + int(self.signals[0])
        name = signal.Signals(self.signals[0]).name
        super().__init__(
            f"{name} received: stopped after step {step} and saved {path}; the same command resumes from it"
        )


@contextlib.contextmanager
def exit_for_requeue():
    """For command-line entry points: a Preempted run exits with its exit code, without a traceback."""
    try:
        yield
    except Preempted as stop:
        print(f"{stop} (exit code {stop.exit_code})", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)


def ignore_stop_signals(worker_id):
    """DataLoader workers: SLURM signals every process of a job; only the training process decides to stop,
    and a worker killed by the signal would fail the batch it was loading."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
