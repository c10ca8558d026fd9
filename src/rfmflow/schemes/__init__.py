"""The built-in schemes, shipped as YAML files users can copy and edit."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rfmflow.core.errors import SchemeError
from rfmflow.core.scheme import Scheme, scheme_from_yaml

DEFAULT_SCHEME = "rfm11"


def builtin_names() -> list[str]:
    """Names of the built-in schemes, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def builtin_text(name: str) -> str:
    """The YAML text of a built-in scheme."""
    if name not in builtin_names():
        raise SchemeError(f"unknown scheme {name!r}; built-in schemes: {', '.join(builtin_names())}")
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def load_scheme(name_or_path: str | Path | Scheme | None = None) -> Scheme:
    """A built-in scheme by name, a scheme YAML file by path, or a Scheme as is."""
    if isinstance(name_or_path, Scheme):
        return name_or_path
    if name_or_path is None:
        name_or_path = DEFAULT_SCHEME
    text_name = str(name_or_path)
    path = Path(text_name)
    if text_name in builtin_names():
        return scheme_from_yaml(builtin_text(text_name), source=text_name)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SchemeError(f"scheme file {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SchemeError(f"scheme file {path}: not UTF-8 text") from None
        return scheme_from_yaml(text, source=str(path))
    raise SchemeError(f"unknown scheme {text_name!r}; built-in schemes: {', '.join(builtin_names())}")
