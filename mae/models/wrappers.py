"""Helpers about a model that are not part of it: `evaluating(model)`, `unwrap(model)` and `whose_code(model)`."""

import contextlib


@contextlib.contextmanager
def evaluating(model):
    """model.eval() for the block, then the mode it had before (training or not)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def unwrap(model):
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def whose_code(model):
    """ "exercises" when any part of the model is the learner's code (a class of their `exercises` package, the
    reference standing in for unwritten steps included), else "solutions": read from the model's classes."""
    learner = any(
        type(module).__module__.partition(".")[0] == "exercises" for module in unwrap(model).modules()
    )
    return "exercises" if learner else "solutions"
