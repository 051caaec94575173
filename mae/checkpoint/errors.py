"""The errors of reading checkpoints and fitting them to models: ValueErrors, so that a job reports them as bad
input, in their own words (mae.engine.flags.run_cli)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose weights do not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle would import or call arbitrary Python objects."""
