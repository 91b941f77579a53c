"""Data sets: images (digits, Fashion-MNIST, CIFAR-10, your own folders, ``.npz`` files and
Python objects), word corpora (PTB), batching, augmentation.

See ``docs/data.md`` for where files are looked up and their formats.
"""

from nasforge.data.augment import Augment, cutout, random_crop, random_flip
from nasforge.data.download import OFFICIAL_MD5, OFFICIAL_URL, download_cifar10
from nasforge.data.images import IMAGE_DATASETS, ImageDataset, load_image_dataset
from nasforge.data.paths import ENV_VAR, user_data_root
from nasforge.data.tensors import BatchLoader, TensorPair, split
from nasforge.data.text import Corpus, Dictionary, batchify, get_batch, load_corpus
from nasforge.data.user import as_dataset, dataset_name, register_dataset, registered_datasets, unregister_dataset

__all__ = [
    "Augment",
    "BatchLoader",
    "Corpus",
    "Dictionary",
    "ENV_VAR",
    "IMAGE_DATASETS",
    "ImageDataset",
    "OFFICIAL_MD5",
    "OFFICIAL_URL",
    "TensorPair",
    "as_dataset",
    "batchify",
    "dataset_name",
    "cutout",
    "download_cifar10",
    "get_batch",
    "load_corpus",
    "load_image_dataset",
    "random_crop",
    "random_flip",
    "register_dataset",
    "registered_datasets",
    "split",
    "unregister_dataset",
    "user_data_root",
]
