"""The run harness the training scripts share: when to checkpoint, and stopping cleanly on a
signal, so that a preempted run loses nothing it had done.

A scheduler that preempts a job (SLURM, a cloud spot instance) first sends SIGTERM, then kills
it after a grace period; Ctrl-C sends SIGINT. Either one, received once, asks the training loop
to stop after its current step: the loop writes a checkpoint and raises `Stopped`, which the
script turns into one line naming `--resume` and exit code 128 + the signal's number (143 for
SIGTERM, 130 for SIGINT), so a wrapper sees the run did not finish. A second signal acts at
once, as it would without this.
"""

import signal
import time


class Stopped(Exception):
    """The run stopped on a signal after writing a checkpoint; `code` is the exit status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class StopSignal:
    """Catches the first SIGTERM or SIGINT (`received`, its number) until `restore()`."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum: int, frame) -> None:
        self.received = signum
        self.restore()  # a second signal acts at once

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def stopped(self, script: str, env_step: int, run_dir) -> Stopped:
        """The exception to raise once the checkpoint at `env_step` is written."""
        name = signal.Signals(self.received).name
        return Stopped(
            f"stopped by {name} at step {env_step}: checkpoint written; continue with "
            f"python {script} --resume {run_dir}",
            128 + self.received,
        )


class CheckpointSchedule:
    """A checkpoint every `interval` steps, at the last step, and whenever `minutes` of wall time
    have passed since the last one (0: never by time), so a long run at scale, where 100k steps
    can take most of an hour, never has more than `minutes` of work unsaved."""

    def __init__(self, interval: int, last_step: int, minutes: float):
        self.interval, self.last_step, self.seconds = interval, last_step, 60.0 * minutes
        self.written_at = time.monotonic()

    def due(self, step: int) -> bool:
        return (
            step % self.interval == 0
            or step == self.last_step
            or (self.seconds > 0 and time.monotonic() - self.written_at >= self.seconds)
        )

    def written(self) -> None:
        self.written_at = time.monotonic()
