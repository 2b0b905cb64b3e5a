"""Sub-commands of the ``vggedu`` command line, one module each (see ``vggedu/cli.py``)."""

from __future__ import annotations

import contextlib
import sys
import warnings


@contextlib.contextmanager
def warnings_as_lines():
    """Within the block, show each warning (e.g. the trainer's ``StallWarning``) as one readable line
    under the progress bars, ``warning: <message>``, not Python's source listing."""
    from tqdm import tqdm

    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *rest, **kw: tqdm.write(f"warning: {message}", file=sys.stderr)
        yield
