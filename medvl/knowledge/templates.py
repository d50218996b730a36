"""Prompt templates: the editable files under ``medvl/ontology/templates/`` and rendering of names through them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medvl.errors import InputError
from medvl.resources import template_dir

#: template set names: one file ``<name>.txt`` each in :func:`medvl.resources.template_dir`
TEMPLATE_SETS = ("pathology", "radiology")


def read_template_file(path: str | Path) -> list[str]:
    """One template per line; blank lines and lines starting with ``#`` are ignored; each needs a ``{}``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "template file not found")
    templates = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{}" not in line and "{name}" not in line:
            raise InputError(path, f"line {number}: template has no '{{}}' placeholder: {line!r}")
        templates.append(line)
    if not templates:
        raise InputError(path, "no templates in file")
    return templates


def load_templates(templates: str | Path | Sequence[str]) -> list[str]:
    """A set name (``pathology``/``radiology``), a file path, or template strings -> template strings."""
    if isinstance(templates, Path):
        return read_template_file(templates)
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            return read_template_file(template_dir() / f"{templates}.txt")
        if "{}" in templates or "{name}" in templates:
            return [templates]
        return read_template_file(templates)
    out = list(templates)
    for t in out:
        if "{}" not in t and "{name}" not in t:
            raise InputError(None, f"template has no '{{}}' placeholder: {t!r}")
    return out


def render(template: str, name: str) -> str:
    return template.replace("{name}", name).replace("{}", name)


def render_prompts(names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every name through every template, in order, without case-insensitive duplicates."""
    seen: set[str] = set()
    out = []
    for name in names:
        for template in templates:
            text = render(template, name)
            key = " ".join(text.lower().split())
            if key not in seen:
                seen.add(key)
                out.append(text)
    return out


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
