"""A tiny tied-embedding language model for the tests of loading, freezing and param groups:
an embedding, a BatchNorm (statistics to load), an output layer sharing the embedding's weight."""
from torch import nn


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(6, 4)
        self.norm = nn.BatchNorm1d(4)
        self.lm_head = nn.Linear(4, 6, bias=False)
        self.lm_head.weight = self.wte.weight  # every tied-embedding LM
