"""The source of a plugin module contributing ``model:tiedlm``, an embedding and a head that share
one weight (as language models do): written to a file by the CLI tests that need a tied target."""

PLUGIN = """\
from mapper_core.plugins import ModelFactory, hookimpl


def build():
    from torch import nn

    net = nn.Module()
    net.wte = nn.Embedding(6, 4)
    net.lm_head = nn.Linear(4, 6, bias=False)
    net.lm_head.weight = net.wte.weight  # tied, as language models do
    return net


@hookimpl
def mapper_models():
    return [ModelFactory("tiedlm", build)]
"""
