"""The data side of the loop: a sampler that resumes part-way through an epoch, keys that carry the epoch to
persistent workers (every sample a function of (seed, epoch, index)), and how many workers a process gets."""

import os

import torch
from torch.utils.data import DistributedSampler


def default_workers(context):
    """Data-loading processes for each training process: the cores this process may use, shared by the
    processes on its node, minus one for the process itself, and at most 10 (the official default).

    The cores: this process's CPU affinity, and no more than SLURM_CPUS_PER_TASK where SLURM gave the task
    that many but does not bind it to them (mae.submit's 10 CPUs per task would otherwise get 10 workers
    beside the training process); torchrun's processes (LOCAL_WORLD_SIZE) share them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        cores = min(cores, int(os.environ["SLURM_CPUS_PER_TASK"]))
    per_process = cores // max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1)
    return min(10, max(per_process - 1, 0))


class ResumableSampler(DistributedSampler):
    """A DistributedSampler that can start part-way through an epoch (after a resume) and stop early.

    `stop` leaves out the samples of an epoch's last, incomplete accumulation: they would be
    loaded and computed only to be thrown away.
    """

    def __init__(self, dataset, num_replicas, rank, seed, shuffle=True, drop_last=True):
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.start, self.stop = 0, self.num_samples

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start : self.stop])

    def __len__(self):
        return max(self.stop - self.start, 0)


class EpochSamples(torch.utils.data.Dataset):
    """`dataset` read with (epoch, index) keys (from WithEpoch).

    The data workers live for the whole run (persistent_workers: not started again at every epoch), each with its
    own copy of the dataset, whose epoch the main process cannot set: each key carries it, so every sample is
    still fixed by (seed, epoch, index), whatever the number of workers.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class WithEpoch(torch.utils.data.Sampler):
    """The indices of a ResumableSampler as (its epoch, index) keys, for EpochSamples."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        return ((self.sampler.epoch, index) for index in self.sampler)

    def __len__(self):
        return len(self.sampler)
