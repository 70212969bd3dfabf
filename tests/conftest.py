import os
import warnings

import numpy as np
import pytest
import torch

# Two cores: keep intra-op threads predictable so timings and determinism hold in tests.
torch.set_num_threads(min(2, os.cpu_count() or 1))
warnings.filterwarnings("ignore", ".*does not have many workers.*")


@pytest.fixture(scope="session")
def fmnist_small():
    """2,000 real Fashion-MNIST training images with labels (skips if the package is absent)."""
    from selfsight.data import load_fashion_mnist

    try:
        data = load_fashion_mnist("train")
    except FileNotFoundError:
        pytest.skip("dataset-fashion-mnist is not installed")
    index = np.random.default_rng(0).permutation(len(data))[:2000]
    return data.subset(np.sort(index))



def assert_reads_back(record: type, path) -> None:
    """A verb's JSON file read into its typed record writes back the same keys, values and
    order (selfsight.results)."""
    import json
    from pathlib import Path

    raw = json.loads(Path(path).read_text())
    assert list(record.load(path).to_json().items()) == list(raw.items())
