"""mapper-core: move trained weights from one model layout into another, declaratively.

The stages are the folders: ``rules`` → ``plan`` → ``io`` (convert, export, inspect) and
``train`` (apply, freeze, fine-tune), with ``plugins`` and ``cli`` at the edges; see
docs/architecture.md. Importing this package imports nothing heavy (no torch).
"""
__version__ = "0.2.0"

from . import _moved

_moved.install()
