"""conftest.py - what the simile package's tests share: the paths of the build's tools (from
the environment that tests/test_python.sh sets: SIMILE_CLI, SIMILE_LOSS_TOOL, SIMILE_SOURCE_DIR)
and seeded random embeddings."""
import os

import numpy as np
import pytest


def _env(name):
    v = os.environ.get(name)
    if not v:
        pytest.fail(f"{name} is not set: run these tests through ctest (tests/test_python.sh)")
    return v


@pytest.fixture
def cli():
    return _env("SIMILE_CLI")


@pytest.fixture
def loss_tool():
    return _env("SIMILE_LOSS_TOOL")


@pytest.fixture
def source_dir():
    return _env("SIMILE_SOURCE_DIR")


@pytest.fixture
def batch():
    """32 embeddings of dimension 16 in 4 classes of 8 (seeded)."""
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((32, 16)).astype(np.float32)
    labels = (np.arange(32) % 4).astype(np.int32)
    return emb, labels
