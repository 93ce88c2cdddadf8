"""A training run's output folder: made writable-checked, and locked while a run writes to it.

Two trainings into one folder would interleave their ``metrics.jsonl`` records and overwrite each other's
checkpoints, so :class:`RunLock` takes an exclusive, non-blocking ``flock`` on ``OUT/.lock`` for the whole
run: the second is refused at once with an :class:`~glassformer.errors.OutputError` naming the holder. The
operating system drops the lock when the process ends, however it ends, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import os
from pathlib import Path

from glassformer.errors import OutputError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected from each other there
    fcntl = None

LOCK_NAME = ".lock"


def writable_dir(path: Path, what: str = "output folder") -> Path:
    """Create ``path`` if needed and check that files can be written in it (an OutputError otherwise)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"the {what} {path} cannot be written: {e.strerror or e}") from None
    return path


class RunLock:
    """``with RunLock(out_dir):`` -- hold ``out_dir/.lock`` exclusively, or raise OutputError at once."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_NAME
        self._file = None

    def __enter__(self) -> RunLock:
        if fcntl is None:
            return self
        try:
            self._file = open(self.path, "a+")
        except OSError as e:
            raise OutputError(f"the output folder {self.path.parent} cannot be written: {e.strerror or e}") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            self._file = None
            raise OutputError(
                f"another training is writing to {self.path.parent} (pid {holder}): wait for it to finish, or "
                "train into another --out"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
