"""NumPy ``.npz`` archives for mapper-core: header-only specs, tensors on demand, an npz writer.

MLX's ``mx.savez`` writes the same format (a zip of ``.npy`` members), so its files read the
same way. Nothing here unpickles: object arrays are refused (``allow_pickle`` is never set).
"""
from .reader import NpzReader, sniff_npz
from .writer import NpzWriteError, convert_to_npz, save_npz

__all__ = ["NpzReader", "NpzWriteError", "convert_to_npz", "save_npz", "sniff_npz"]
