import contextlib
import os
import warnings

import numpy as np
import pytest
import torch

# Two cores: keep intra-op threads predictable so timings and determinism hold in tests.
torch.set_num_threads(min(2, os.cpu_count() or 1))
warnings.filterwarnings("ignore", ".*does not have many workers.*")


@contextlib.contextmanager
def one_thread():
    """One intra-op thread: tiny batches (and LOBPCG's many small products) on two shared cores
    only wait on a busy neighbour with a second thread (measured: steps 11-50 times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def single_thread():
    """:func:`one_thread` around each test (``pytestmark = pytest.mark.usefixtures(...)``)."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def single_thread_module():
    """:func:`one_thread` around a whole module, its module-scoped fixtures included."""
    with one_thread():
        yield


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


def moved_by_one_step(model, loss) -> set[str]:
    """The names of ``model``'s parameters that one step of its own optimizer on ``loss``
    changed (the method contract: a step must move what it trains)."""
    optimizer = model.configure_optimizers()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss.backward()
    optimizer.step()
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
