"""Small models for the explorer's tests: a random decoder, a compiled RASP program, and a running server."""

import pytest
import torch

from glassformer import ModelConfig, Transformer

pytest.importorskip("starlette", reason="the explorer needs the 'explore' extra (starlette, uvicorn)")


@pytest.fixture(scope="session")
def decoder():
    torch.manual_seed(0)
    return Transformer(ModelConfig(arch="decoder", d_model=32, n_layers=2, n_heads=4, d_vocab=10, n_ctx=16)).eval()


@pytest.fixture(scope="session")
def compiled_reverse():
    from glassformer import rasp

    return rasp.compile(rasp.library.get("reverse"), vocab="abc", max_len=6)


@pytest.fixture(scope="session")
def explorer(decoder):
    from glassformer.explorer import Explorer, subject_of

    return Explorer(subject_of(decoder, name="random decoder"))


@pytest.fixture(scope="session")
def server(explorer):
    from glassformer.explorer.server import Server

    srv = Server(explorer).start()
    yield srv
    srv.stop()
