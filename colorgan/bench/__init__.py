"""Performance benchmark (``python -m colorgan.bench``, ``make bench``); ``main`` runs it.

One module per part, each with its ``part_*`` function (``--parts`` names the first six):

    limit.py              the device's measured peak FLOP/s (conv 3 x 3 and matmul, fp32 and bf16)
    lab.py                batched RGB -> Lab against scikit-image per image
    step.py               the D + G training step per model and variant, and its fraction of the peak
    data.py               images/s that the CIFAR-10 and photo loaders (folder, shards) deliver to the step
    epoch.py              a real train.py epoch against the step-only time
    infer.py              colorizing one large photo, whole and in tiles
    peer.py               the official pix2pix colorization step against ours (--peer-dir)
    default_precision.py  what trainer.precision=auto chooses and why (always run); the defaults' step variant

and around them:

    common.py             what the parts share: repository root, timing, test images, machine description
    report.py             results.json and RESULTS.md (one section per part), also printed
    cli.py                main: the options, the parts in order, the report
"""

from colorgan.bench.cli import main

__all__ = ["main"]
