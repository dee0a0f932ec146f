"""What a plugin's reader hands back as a tensor: big-endian arrays are converted by value, tensors without data refused."""
from __future__ import annotations

import importlib

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

# A ".odd" file names a mode; the reader returns its tensors in that odd form.
PLUGIN = """
    import numpy as np
    import torch
    from mapper_core.plugins import Format, ReaderBase, hookimpl
    from mapper_core.specs import TensorSpec

    VALUES = {
        "f32": np.array([[1.5, -2.25], [3e38, -0.0]], dtype=np.float32),
        "f64": np.array([1e-300, -7.0, 2.5], dtype=np.float64),
        "f16": np.array([0.5, -65504.0], dtype=np.float16),
        "i16": np.array([1, -2, 32767], dtype=np.int16),
        "i64": np.array([[2**40 + 3, -5]], dtype=np.int64),
        "u8": np.array([1, 255], dtype=np.uint8),
    }
    NAMES = {"f32": "F32", "f64": "F64", "f16": "F16", "i16": "I16", "i64": "I64", "u8": "U8"}

    class OddReader(ReaderBase):
        def __init__(self, path):
            self.path = path
            self.mode = open(path).read().strip()

        def specs(self):
            return {k: TensorSpec(NAMES[k], v.shape) for k, v in VALUES.items()}

        def get_tensor(self, key):
            value = VALUES[key]
            if self.mode == "big-endian":
                return value.astype(value.dtype.newbyteorder(">"))
            if self.mode == "big-endian-readonly":
                value = value.astype(value.dtype.newbyteorder(">"))
                value.flags.writeable = False
                return value
            if self.mode == "meta":
                return torch.from_numpy(value).to("meta")
            return value

    @hookimpl
    def mapper_formats():
        return [Format("odd", (".odd",), open=lambda path, **options: OddReader(path))]
"""


@pytest.fixture
def odd(plugin_modules, tmp_path):
    module = plugin_modules("plugr_odd", PLUGIN)

    def write(mode: str):
        path = tmp_path / f"{mode}.odd"
        path.write_text(mode)
        return path

    return module, write


@pytest.mark.parametrize("mode", ["big-endian", "big-endian-readonly"])
def test_a_big_endian_array_is_converted_by_value(odd, tmp_path, mapper, mode):
    module, write = odd
    expected = importlib.import_module(module).VALUES  # the native arrays the reader turns big-endian
    out = tmp_path / f"{mode}.safetensors"
    proc = mapper("--plugin", module, "convert", write(mode), out, "--verify")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    written = load_file(str(out))
    assert sorted(written) == sorted(expected)
    for key, value in expected.items():
        # the values, not the bytes: a byte-for-byte copy of a big-endian array reads as other numbers
        assert written[key].numpy().tobytes() == value.astype(value.dtype.newbyteorder("<")).tobytes(), key
        assert np.array_equal(written[key].numpy(), value), key


def test_a_meta_tensor_is_refused_naming_the_plugin_format_and_key(odd, tmp_path, mapper):
    module, write = odd
    out = tmp_path / "m.safetensors"
    proc = mapper("--plugin", module, "convert", write("meta"), out)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"plugin '{module}', format 'odd', reader OddReader: get_tensor(" in proc.stderr
    assert "returned a tensor on the meta device: it holds no data" in proc.stderr
    assert not out.exists()
