"""Shared pytest fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test single-threaded: on a shared 2-core machine 2 threads are often much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory):
    """A tiny trained run with named classes (``serve_fixtures.train_tiny_run``)."""
    from serve_fixtures import train_tiny_run  # here, so that other tests skip its imports

    return train_tiny_run(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="session")
def serve_url(serve_run):
    """``gankit serve`` of ``serve_run`` on a free port, as a subprocess; yields its URL."""
    from serve_fixtures import start_server, stop_server

    proc, url = start_server(serve_run)
    yield url.rstrip("/")
    stop_server(proc)
