"""Checks on adapter folders before anything loads or publishes them: readable, finite, made for this base.

PEFT's own failures here are a page of shape mismatches or a safetensors parse error; these checks
turn them into one line naming the file, both base models and what to do instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from stylealign.errors import RunFailed, UserError

WEIGHTS = "adapter_model.safetensors"


def read_shapes(folder: Path) -> dict[str, list[int]]:
    """Return {tensor name: shape} of an adapter's safetensors file; UserError if missing or unreadable."""
    from safetensors import safe_open

    weights = Path(folder) / WEIGHTS
    if not weights.exists():
        raise UserError(f"{weights}: missing (stylealign loads safetensors adapters only); retrain or restore the run")
    try:
        with safe_open(str(weights), "pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError: truncated or overwritten file
        raise UserError(f"{weights}: not a readable safetensors file ({' '.join(str(e).split())}); "
                        f"the file is corrupted or truncated: retrain or restore the run") from None


def read_config(folder: Path) -> dict:
    """Return an adapter's adapter_config.json; UserError naming the file if it is missing or not a JSON object."""
    config = Path(folder) / "adapter_config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:  # a UnicodeDecodeError is a ValueError too
        raise UserError(f"{config}: not a readable adapter config ({' '.join(str(e).split())}); the file is "
                        "corrupted or truncated: retrain or restore the run") from None
    return data


def check_for_base(folder: Path, model, base_name: str) -> None:
    """Raise UserError unless the adapter in `folder` is readable and every LoRA tensor fits a module of
    `model` (the base `base_name`)."""
    read_config(folder)
    shapes = read_shapes(folder)
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    for key, shape in shapes.items():
        module_path, kind = _module_of(key)
        if kind is None:
            continue
        expected = _expected_dim(core, module_path, kind)
        got = shape[1] if kind == "lora_A" else shape[0]
        if expected != got:
            trained_on = trained_base(folder)
            raise UserError(f"adapter {folder} was trained on base {trained_on!r}, not on {base_name!r} "
                            f"({module_path}: {kind} has size {got}, this base needs {expected}); "
                            f"pass --base {trained_on} or an adapter trained on {base_name}")


def _module_of(key: str) -> tuple[str, str | None]:
    """Return (module path inside the base model, "lora_A"/"lora_B" or None) for a PEFT tensor name."""
    for kind in ("lora_A", "lora_B"):
        marker = f".{kind}."
        if marker in key:
            path = key.split(marker)[0]
            return path.removeprefix("base_model.model."), kind
    return key, None


def _expected_dim(core, module_path: str, kind: str) -> int | None:
    """Return the in (lora_A) or out (lora_B) features the base's module needs, None if it has no such module."""
    try:
        module = core.get_submodule(module_path)
    except AttributeError:
        return None
    module = getattr(module, "base_layer", module)
    return getattr(module, "in_features" if kind == "lora_A" else "out_features", None)


def trained_base(folder: Path) -> str:
    """Return the base an adapter was trained on: the run manifest's name, else adapter_config.json's path."""
    from stylealign.manifest import read_manifest

    folder = Path(folder)
    name = read_manifest(folder, strict=False).base_name
    if name:
        return name
    try:
        return json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path") or "unknown"
    except (OSError, ValueError):
        return "unknown"


def check_finite(folder: Path) -> None:
    """Raise RunFailed if any adapter weight is NaN or infinite (training diverged; never publish that)."""
    import torch
    from safetensors.torch import load_file

    bad = [k for k, t in load_file(str(Path(folder) / WEIGHTS)).items() if not torch.isfinite(t).all()]
    if bad:
        raise RunFailed(f"{Path(folder) / WEIGHTS}: {len(bad)} tensor(s) hold NaN/inf (e.g. {bad[0]}); training "
                        f"diverged, nothing was published: lower the learning rate and train again")
