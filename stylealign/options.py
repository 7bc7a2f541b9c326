"""Typed options: dataclass fields that carry their help and flag settings (`option`), turned into argparse
flags (`add_config_arguments`) and back (`config_from_args`), and nested dataclasses built from YAML or dicts with
typed, named errors (`from_dict`, `coerce`). Every command's options and the training recipe use them, so the
CLI never lists options by hand and cannot drift from the dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import field

from stylealign.errors import ConfigError

REQUIRED = dataclasses.MISSING  # option(REQUIRED, ...): a field without a default (a required positional or flag)


def option(default, help: str, **kw):
    """Return a dataclass field with its help text (and flag options: flag, choices, metavar, parse,
    action, nargs, positional, exclusive, required, hidden, cli=False) in the metadata that
    add_config_arguments / add_recipe_arguments read."""
    if default is REQUIRED:
        return field(metadata={"help": help, **kw})
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    if dataclasses.is_dataclass(default):  # a group of options (see add_config_arguments)
        return field(default_factory=lambda: dataclasses.replace(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def from_dict(cls, data: dict, where: str = "recipe", prefix: str = ""):
    """Build a (nested) dataclass from a dict, naming the place (`where`: a file, flags) and the dotted field
    (`prefix`) of an unknown key or a bad value on error."""
    hints, known = _hints(cls), {f.name for f in dataclasses.fields(cls)}
    here = f"{where}: {prefix.rstrip('.')}" if prefix else where
    if not isinstance(data, dict):
        raise ConfigError(f"{here}: expected a mapping of fields, got {data!r}")
    if hasattr(cls, "split_unknown"):  # a section that passes other libraries' fields through (a TRL stage)
        data = cls.split_unknown(data)
    unknown = set(data) - known
    if unknown:
        close = {k: difflib.get_close_matches(str(k), known, n=1) for k in unknown}
        guess = "".join(f"; did you mean {c[0]!r} for {k!r}?" for k, c in sorted(close.items(), key=str) if c)
        raise ConfigError(f"{here}: unknown field(s) {sorted(unknown, key=str)}{guess}; known: {sorted(known)}")
    kwargs = {}
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]):
            value = from_dict(hints[key], value or {}, where, f"{prefix}{key}.")
        else:
            value = coerce(value, hints[key], f"{where}: {prefix}{key}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{here}: {e}") from None


def coerce(value, kind, where: str = "recipe"):
    """Return `value` as the field's type: YAML reads `1e-4` as a string and `1e3` as a float, so a string or
    integral float that spells the right type is converted; anything else is a ConfigError naming the field."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return parse_bool(value)
            except argparse.ArgumentTypeError:
                pass
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is int and not isinstance(value, bool):
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if kind is str and isinstance(value, bool):  # YAML 1.1 reads `compile: on` (and off, yes, no) as a boolean
        return "on" if value else "off"
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _number(value):
    """Return `value` as an int or float if it is one or spells one, else None."""
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def dataclass_flags(cls, prefix: str = ""):
    """Yield (dotted name, type, field) for every leaf field of a nested dataclass."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if f.metadata.get("cli") is False:
            continue
        if dataclasses.is_dataclass(kind):
            yield from dataclass_flags(kind, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", kind, f


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def leaf_type(kind):
    """Return the type of an `X | None` hint (X), or the hint itself."""
    if isinstance(kind, types.UnionType):
        return next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def add_config_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """Add one flag per field of the flat dataclass `cls`: `--field-name` (or metadata "flag") with the
    field's help and default, stored under the field's name. Bool fields get --x / --no-x (or, with a
    "flag", a switch that flips the default); metadata "parse" converts the text, "action" ("append",
    "extend") with "nargs" collects repeats, "positional" makes it an argument (with "nargs"), fields with
    the same "exclusive" name exclude each other, "hidden" hides the flag, "required" demands it; fields
    with cli=False are left out. A field whose type is a dataclass is a group of options: its fields become
    flags of their own (titled by the field's "group"), so each command has one option object.
    config_from_args builds the dataclass back."""
    hints, groups = _hints(cls), {}
    for f in dataclasses.fields(cls):
        meta, kind, default = f.metadata, leaf_type(hints[f.name]), _default(f)
        if meta.get("cli") is False:
            continue
        if dataclasses.is_dataclass(kind):
            nested = isinstance(parser, argparse._ArgumentGroup)  # argparse groups do not nest
            add_config_arguments(parser if nested else parser.add_argument_group(meta.get("group")), kind)
            continue
        target = parser
        if meta.get("exclusive"):
            if meta["exclusive"] not in groups:
                groups[meta["exclusive"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["exclusive"]]
        if meta.get("positional"):
            parser.add_argument(f.name, help=help_text(meta.get("help")), nargs=meta.get("nargs"), type=meta.get("parse"),
                                metavar=meta.get("metavar"), **({} if default is REQUIRED else {"default": default}))
            continue
        target.add_argument(meta.get("flag") or "--" + f.name.replace("_", "-"), **_flag_options(f, kind, default))


def help_text(text: str | None) -> str | None:
    """Return a help text as argparse wants it: plain text, its "%" doubled (argparse %-formats every help)."""
    return text and text.replace("%", "%%")


def _flag_options(f: dataclasses.Field, kind, default) -> dict:
    """Return add_argument's keywords for the flag of field `f` (see add_config_arguments)."""
    meta = f.metadata
    shown = argparse.SUPPRESS if meta.get("hidden") else f"{meta.get('help', '')} (default {default!r})"
    kw = {"dest": f.name, "help": shown}
    if kind is bool and meta.get("flag"):  # a named switch: --quiet sets progress=False (its help says what it does)
        kw.update(action="store_false" if default else "store_true", default=default)
        if not meta.get("hidden"):
            kw["help"] = meta.get("help", "")
    elif kind is bool:
        kw.update(action=argparse.BooleanOptionalAction, default=default)
    elif meta.get("action") in ("append", "extend"):
        kw.update(action=meta["action"], default=default if isinstance(default, list) else [], nargs=meta.get("nargs"),
                  type=meta.get("parse"), metavar=meta.get("metavar") or f.name.upper())
    else:
        kw.update(type=meta.get("parse", kind), default=default, choices=meta.get("choices"),
                  metavar=meta.get("metavar") or (None if meta.get("choices") else f.name.upper()))
    if meta.get("required") or default is REQUIRED:
        kw.update(required=True, help=meta.get("help"))
        kw.pop("default", None)
    return {**kw, "help": help_text(kw["help"])}


def config_from_args(args: argparse.Namespace, cls):
    """Return `cls` (with its groups of options) built from the flags add_config_arguments added; each
    dataclass's __post_init__ validates."""
    hints, values = _hints(cls), {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is False:
            continue
        if dataclasses.is_dataclass(leaf_type(hints[f.name])):
            values[f.name] = config_from_args(args, leaf_type(hints[f.name]))
        elif hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    return cls(**values)


def flatten(d, prefix: str = "") -> dict:
    """Return nested settings as {"sft.learning_rate": value, ...} (to compare two runs' settings field by field)."""
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return out
