"""matplotlib on demand: it is an optional extra, and every plot writes a file (never a window)."""
from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """`matplotlib.pyplot` on the file-only Agg backend, or an ImportError naming the extra to install."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plots need matplotlib, which is an optional extra: pip install 'dllm-decode[plot]' "
                          "(or pass --no-plots)") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
