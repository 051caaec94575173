"""The engine: the training loop that pretraining, linear probing and fine-tuning share, and what it stands on.

    loop.py               fit(args, context, job): epochs, steps, stops, the end; Job is what a job hands it
    step.py               one optimizer step: micro-steps, gradient accumulation, losses summed on the device
    schedule.py           warm-up + cosine learning rate, per parameter group
    precision.py          bf16 / fp16 / float32 per device, the one autocast
    checkpointer.py       when checkpoint-last.pth is written, never after a non-finite loss
    background_writer.py  the host snapshot and the thread that writes it
    resume.py             where a run continues, and which arguments may change
    rng.py                every generator's state, per rank
    data.py               the resumable sampler, epoch-carrying keys, data workers
    logs.py               log.jsonl, log.txt, TensorBoard
    flags.py              the shared command-line flags, presets, run_cli
    distributed.py        ranks and devices from torchrun or SLURM       preemption.py  stop signals, requeue
    run_folder.py         the output_dir lock

Nothing is imported here: take what you need from its module (`from mae.engine.loop import Job, fit`), so that
code that needs only precision.py (evaluation) does not load the loop, DDP and the writer thread.

May import: torch, mae.checkpoint, mae.data (the collate function), mae.models. Never a job.
"""
