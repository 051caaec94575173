"""Data: images, datasets and the transforms that feed the models.

    files.py          image files on disk: found under a folder (links followed, each folder once), read in 8 bits
    images.py         the photographs installed packages ship, and how every image is normalised
    pretraining.py    pretraining datasets (--data_path): image folders, bundled photographs; seeded samples
    digits.py         scikit-learn's digits, and the shifted digits of notebook 11
    labelled.py       labelled data for linear probing and fine-tuning
    device_decode.py  --gpu_decode: JPEGs decoded on the GPU, cropped there

Every sample is a function of (seed, epoch, index). May import: torch, torchvision, PIL, numpy. Nothing of mae
outside this package.
"""
