"""Fixtures shared by several test files."""

import pytest
import torch


@pytest.fixture()
def one_thread():
    """Run a test with one torch thread (stable timings and reduction order on a shared 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def hm():
    """The open hand model (both hands)."""
    from handcast.hand import HandModel

    return HandModel(kind="open")
