"""What the torch.distributed tests share: a one-rank process group (torch imported inside, so that
this file loads where torch is not installed; the test modules beside it are then not collected)."""
import pytest


@pytest.fixture
def group(tmp_path):
    """A gloo process group of one rank for the test, destroyed after it."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
