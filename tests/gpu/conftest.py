"""Fixtures for the GPU suite: a device, a fresh stream per test, seeded random inputs."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def device():
    import cudart_kit as ck

    return ck.get_device(0)


@pytest.fixture
def stream(device):
    import cudart_kit as ck

    s = ck.Stream.create(device)
    yield s
    s.sync()
    s.close()


@pytest.fixture
def rng(request):
    # fresh data every run, but reproducible from the printed seed when a test fails
    seed = np.random.SeedSequence().entropy % (2**32)
    request.node.user_properties.append(("seed", seed))
    print(f"seed={seed}")
    return np.random.default_rng(seed)
