"""Test-wide settings: the checkout under test, offline model hub, one math thread per xdist worker."""

import os
import sys
from pathlib import Path

import pytest

# Test the code of the checkout these tests are in (also in subprocesses), even when the
# installed package points at another worktree.
ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch at one thread for a module: tiny GRUs run fastest so, and far faster than two on a
    busy machine. Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    from helpers import torch_threads

    with torch_threads(1):
        yield
