"""Rank 0's logs: log.jsonl (every log step and epoch), the official log.txt, TensorBoard; a failed write is a
warning, never a stop, and a torn line is left out when read."""

import json
import os
import warnings
from pathlib import Path


class Log:
    """Rank 0's outputs: JSON lines (log.jsonl: every log step and epoch), the official log.txt (one JSON
    object per epoch: train_loss, train_lr, epoch, and the job's test_* fields), TensorBoard scalars and
    images. Other ranks write nothing. A write that fails (a full disk, a TensorBoard error) is a warning:
    logs never stop training, and resuming never depends on them."""

    def __init__(self, args, context, position):
        self.enabled = context.is_main
        if not self.enabled:
            return
        self.path = Path(args.output_dir) / "log.jsonl"
        self.official = Path(args.output_dir) / "log.txt"
        # Drop the lines of steps and epochs that the resumed run will redo.
        _keep_lines(self.path, lambda line: line.get("step", 0) <= position.step)
        _keep_lines(self.official, lambda line: line.get("epoch", 0) < position.epoch)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(args.log_dir or args.output_dir)

    def write(self, record, images=None):
        if self.enabled:
            _never_fatal(
                self._write, record, images, what=f"the {record['kind']} log line of step {record['step']}"
            )

    def _write(self, record, images):
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if isinstance(value, float) and key != "epoch":
                self.writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])
        if images is not None:
            self.writer.add_image("reconstruction", images, record["step"])
        self.writer.flush()

    def write_official(self, record):
        if self.enabled:
            _never_fatal(
                _append_line, self.official, record, what=f"log.txt's line of epoch {record['epoch']}"
            )


def _append_line(path, record):
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _never_fatal(function, *args, what):
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 - a log is worth less than the training it describes
        warnings.warn(
            f"could not write {what} ({type(error).__name__}: {error}); training goes on", stacklevel=3
        )


def read_json_lines(path):
    """The JSON objects of a log, one a line; a line that does not parse (torn by a kill or a full disk
    in the middle of a write) is left out with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    records, torn = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            torn += 1
    if torn:
        warnings.warn(f"left out {torn} unreadable line(s) of {path} (a write was interrupted)", stacklevel=2)
    return [r for r in records if isinstance(r, dict)]


def _keep_lines(path, keep):
    """Rewrite a log with the lines `keep` accepts, atomically: a kill during the rewrite loses nothing."""
    if path.exists():
        lines = "".join(json.dumps(line) + "\n" for line in read_json_lines(path) if keep(line))
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(lines)
        os.replace(tmp, path)
