"""``torchrun --nproc-per-node N -m mapper_core.dist convert SRC DST [mapper convert's options]``."""
from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Sequence

USAGE = ("usage: torchrun [torchrun options] -m mapper_core.dist convert SRC DST.safetensors.index.json "
         "[--rules R] [mapper convert's options]")


def main(argv: Sequence[str] | None = None) -> int:
    from ..cli import main as cli_main
    from ..cli.context import Context

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "convert":
        sys.stderr.write(f"mapper: error: only convert runs on torch.distributed\n{USAGE}\n")
        return 2
    if any(a.startswith(("--workers", "--output-format")) for a in argv):
        sys.stderr.write("mapper: error: --workers and --output-format do not apply here: the ranks are the "
                         f"workers, and the output is sharded safetensors\n{USAGE}\n")
        return 2
    positional = [a for a in argv[1:] if not a.startswith("-")]
    if len(positional) >= 2 and not positional[1].endswith(".safetensors.index.json"):
        sys.stderr.write(f"mapper: error: {positional[1]}: on several ranks the output is sharded: name its index, "
                         f"e.g. model.safetensors.index.json\n{USAGE}\n")
        return 2
    if len(positional) >= 2 and not Path(positional[1]).parent.is_dir():  # before any rank reads the source
        sys.stderr.write(f"mapper: error: {positional[1]}: the folder {Path(positional[1]).parent} does not exist; "
                         "create it first (on every machine, when the ranks run on several)\n")
        return 2
    from ..errors import BadInputError
    from .ranks import TorchRanks

    try:
        ranks = TorchRanks()
    except BadInputError as exc:
        sys.stderr.write(f"mapper: error: {exc}\n{USAGE}\n")
        return 2
    try:
        out = sys.stdout if ranks.leader else io.StringIO()  # one summary, from rank 0
        defaults = {"executor": ranks} if ranks.leader else {"executor": ranks, "quiet": True}
        err = _RankStderr(ranks.leader)
        code = cli_main(argv, ctx=Context(out=out, err=err), defaults=defaults)
        if code != 0:  # one error, from rank 0: each other rank says one line, or its own error if it differs
            line = ranks.failed(err.messages, code)
            if line is not None:
                sys.stderr.write(f"mapper: error: {line}\n")
        return code
    finally:
        ranks.close()


class _RankStderr(io.TextIOBase):
    """A rank's stderr for the command: its error lines are kept (``messages``) and printed only on rank 0;
    everything else (warnings, progress) goes to stderr as it comes."""

    PREFIX = "mapper: error: "  # how Context.error writes one, in one write

    def __init__(self, leader: bool):
        self.leader, self.messages = leader, []

    def write(self, text: str) -> int:
        if text.startswith(self.PREFIX):
            self.messages.append(text[len(self.PREFIX):].rstrip("\n"))
            if not self.leader:
                return len(text)
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:  # rank 0's progress bar, on a terminal
        return sys.stderr.isatty()


if __name__ == "__main__":
    sys.exit(main())
