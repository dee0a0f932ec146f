"""A refusal names what the pickle asks for, however it asks (trial 5, F5): protocol 4's STACK_GLOBAL,
INST, OBJ and legacy files name the global as GLOBAL does (torch's own scan reads GLOBAL only and
said "Unsupported operand 140"); a global that runs commands is called out instead of suggesting
--trust-pickle; an opcode weights_only cannot read is named; torch's protocol warning is not shown."""
from __future__ import annotations

import fractions
import warnings
import zipfile

import pytest

torch = pytest.importorskip("torch")

from cli_runner import mapper  # noqa: E402  tests/helpers
from mapper_core.errors import UnsafeCheckpointError  # noqa: E402
from mapper_core.io.formats import open_checkpoint  # noqa: E402
from mapper_core.io.formats.torch_pickle import TrustPickleWarning  # noqa: E402


def _unicode(s: str) -> bytes:
    return b"\x8c" + bytes([len(s)]) + s.encode()


def _archive(path, pkl: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in (("data.pkl", pkl), ("byteorder", b"little"), ("version", b"3\n")):
            zf.writestr(f"archive/{name}", data)
    return path


# Each calls posix.system('true') when fully unpickled; none is ever loaded with trust here.
STACK_GLOBAL = b"\x80\x04}" + _unicode("x") + _unicode("posix") + b"\x94" + _unicode("system") + b"\x94\x93" \
    + _unicode("true") + b"\x85Rs."
INST = b"\x80\x02}X\x01\x00\x00\x00x(X\x04\x00\x00\x00trueiposix\nsystem\ns."
OBJ = b"\x80\x02}X\x01\x00\x00\x00x(cposix\nsystem\nX\x04\x00\x00\x00trueos."


@pytest.mark.parametrize("pkl", [STACK_GLOBAL, INST, OBJ], ids=["stack-global", "inst", "obj"])
def test_the_global_is_named_however_the_pickle_reaches_it(tmp_path, pkl):
    src = _archive(tmp_path / "evil.pt", pkl)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UnsafeCheckpointError) as info:
            open_checkpoint(src)
    message = str(info.value)
    assert "needs the global 'posix.system'" in message and "Do not pass --trust-pickle" in message
    assert "operand" not in message and "Unsupported" not in message
    assert not [w for w in caught if "pickle protocol" in str(w.message)]


def test_the_command_line_shows_no_torch_warning(tmp_path):
    src = _archive(tmp_path / "evil.pt", STACK_GLOBAL)
    r = mapper("inspect", src)
    assert r.returncode == 2 and "Detected pickle protocol" not in r.stderr
    assert r.stderr.count("mapper:") == 1 and "'posix.system'" in r.stderr


def test_a_legacy_file_names_its_global_too(tmp_path, monkeypatch):
    src = tmp_path / "ns.pt"
    torch.save({"w": torch.zeros(1), "f": fractions.Fraction(1, 3)}, src, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match=r"needs the global 'fractions.Fraction', and unpickling it "
                                                    r"could run code\. If you trust the file's source, pass --trust"):
        open_checkpoint(src)


def test_a_protocol_4_checkpoint_names_the_opcode_and_how_to_resave(tmp_path):
    src = tmp_path / "p4.pt"
    torch.save({"w": torch.ones(2)}, src, pickle_protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UnsafeCheckpointError) as info:
            open_checkpoint(src)
    assert "its pickle uses the opcode FRAME (149, pickle protocol 4), which torch.load(weights_only=True) does " \
           "not read. Re-save it with torch.save's default protocol (2)" in str(info.value)
    assert not [w for w in caught if "pickle protocol" in str(w.message)]
    with pytest.warns(TrustPickleWarning), open_checkpoint(src, trust_pickle=True) as reader:  # torch reads it
        assert torch.equal(reader.get_tensor("w"), torch.ones(2))


def test_what_weights_only_allows_is_still_read(tmp_path):
    src = tmp_path / "ok.pt"
    torch.save({"w": torch.arange(3.0)}, src)
    with open_checkpoint(src) as reader:
        assert torch.equal(reader.get_tensor("w"), torch.arange(3.0))
