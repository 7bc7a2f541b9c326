"""Entry to the Gradio app in the top-level `ui/` folder (layout lives there, logic here).

`ui/` sits beside the package in the source tree, so when it is not importable (an editable
install run from elsewhere) the repository root is put on sys.path first.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def ui_module():
    """Return the `ui.app` module."""
    try:
        return importlib.import_module("ui.app")
    except ModuleNotFoundError as e:
        if e.name not in ("ui", "ui.app") or not (REPO_ROOT / "ui" / "app.py").exists():
            raise
        sys.path.insert(0, str(REPO_ROOT))
        return importlib.import_module("ui.app")


def build_app(service, **kwargs):
    """Return the arena's gr.Blocks for an ArenaService (see ui.app.build_app)."""
    return ui_module().build_app(service, **kwargs)


def launch_app(demo, **kwargs):
    """Serve the app (see ui.app.launch_app): 127.0.0.1, no share link, optional auth."""
    return ui_module().launch_app(demo, **kwargs)
