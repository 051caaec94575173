"""Every random choice of a sample as a function of (seed, epoch, index): what makes a run give the same batches
whatever its processes, workers or restarts, so that a killed run resumes exactly and 2 processes equal 1."""

import contextlib
import random
import warnings

import numpy as np
import torch


def sample_seed(seed, epoch, index):
    """One 63-bit seed per (run seed, epoch, sample index)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class SeededSamples(torch.utils.data.Dataset):
    """Base of the datasets here: every random choice for sample `index` in epoch `epoch` is a function of
    (seed, epoch, index), so a run gives the same batches whatever its processes, workers or restarts.

    Subclasses draw their random numbers inside `with self.seeded(index):`, and return `self.unreadable(index,
    error)` for a sample that cannot be read (the collate function drops it, the trainer counts it).
    """

    def __init__(self, seed=0):
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    @contextlib.contextmanager
    def seeded(self, index):
        """torch's, `random`'s and numpy's global generators seeded for this sample, then put back.

        (Transforms draw from all three: torchvision from torch, timm's RandAugment from `random`.)
        """
        seed = sample_seed(self.seed, self.epoch, index)
        state = random.getstate(), np.random.get_state()
        try:
            random.seed(seed)
            np.random.seed(seed % 2**32)
            with torch.random.fork_rng(devices=[]):
                # The CPU generator only: torch.manual_seed would also reseed the GPUs' generators, which fork_rng
                # (devices=[]) does not put back, so drop-path masks in the main process would depend on the samples.
                torch.default_generator.manual_seed(seed)
                yield
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])

    @staticmethod
    def unreadable(index, error):
        """A corrupt or unreadable file: skip it, loudly."""
        warnings.warn(f"skipping unreadable image #{index}: {error}", stacklevel=3)
