"""The bundled demo data set (CDNOW, see README.md beside this file)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from importlib import resources
from pathlib import Path

DEMO_FILE = "CDNOW_master.txt.gz"


def demo_path() -> AbstractContextManager[Path]:
    """A context manager giving a filesystem path to the demo transactions file."""
    return resources.as_file(resources.files(__name__).joinpath(DEMO_FILE))
