"""Stage 3a, io: checkpoint readers (:mod:`.formats`), the streaming safetensors writer,
atomic output, :mod:`.convert`, :mod:`.verify`, :mod:`.inspection` and :mod:`.export`.

The header-only path (safetensors and spec files) never imports torch; the torch reader,
:mod:`.torch_dtypes` and :mod:`.tensor_ops` need the ``mapper-core[torch]`` extra.
Import from the modules, e.g. ``from mapper_core.io.convert import convert``.
"""

MAX_WORKERS = 1024  # --workers N: processes forked on one machine, or ranks planned for by --cost (here, not in
# .cost, so that parsing the option imports nothing more)
