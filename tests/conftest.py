"""Shared pytest fixtures."""

import pytest
from training_fixtures import single_thread


@pytest.fixture
def one_thread():
    """Run a test single-threaded (:func:`training_fixtures.single_thread`)."""
    with single_thread():
        yield


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
