"""The floor: the least a script must do to validate a config tree, for comparison.

Reads every ``.yaml`` / ``.json`` file of the tree with PyYAML's libyaml loader
(``yaml.CSafeLoader``; no strictness, no locations), merges the four layers of every
(app, env) and validates each resolved result with one cached validator per app schema,
using ``jsonschema`` (``--impl jsonschema``) or ``jsonschema-rs`` (``--impl rs``).
No duplicate-key, tag, alias or YAML 1.1 checks, no provenance, no cross-file rules:
it is the speed to beat, not a validator to use.

Prints ``<pairs> pairs, <invalid> invalid, <errors> errors`` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml

LOADER = yaml.CSafeLoader


def read_tree(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as fh:
                data = fh.read()
            try:
                if name.endswith(".json"):
                    out[rel] = json.loads(data)
                elif name.endswith((".yaml", ".yml")):
                    out[rel] = yaml.load(data, Loader=LOADER)  # noqa: S506 - CSafeLoader is the safe loader
            except (yaml.YAMLError, ValueError):
                out[rel] = None
    return out


def merge(base: dict[str, Any], layer: Any) -> dict[str, Any]:
    if not isinstance(layer, dict):
        return base
    for key, value in layer.items():
        current = base.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            base[key] = merge(dict(current), value)
        elif isinstance(value, dict):
            base[key] = merge({}, value)
        else:
            base[key] = value
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--impl", choices=("jsonschema", "rs"), default="rs")
    args = parser.parse_args()

    if args.impl == "rs":
        import jsonschema_rs

        def compile_schema(schema: Any) -> Any:
            return jsonschema_rs.validator_for(schema, validate_formats=True)

        def errors(validator: Any, instance: Any) -> int:
            if validator.is_valid(instance):
                return 0
            return sum(1 for _ in validator.iter_errors(instance))

    else:
        import jsonschema

        def compile_schema(schema: Any) -> Any:
            return jsonschema.Draft202012Validator(
                schema, format_checker=jsonschema.FormatChecker()
            )

        def errors(validator: Any, instance: Any) -> int:
            return sum(1 for _ in validator.iter_errors(instance))

    files = read_tree(args.root)
    repo = files.get("configctl.yaml") or {}
    environments = list(repo.get("environments") or [])
    apps = sorted({p.split("/")[1] for p in files if p.startswith("apps/") and p.count("/") >= 2})
    validators: dict[str, Any] = {}
    pairs = invalid = total = 0
    for app in apps:
        manifest = files.get(f"apps/{app}/app.yaml")
        if not isinstance(manifest, dict) or not isinstance(manifest.get("schema"), str):
            continue
        schema_path = f"apps/{app}/{manifest['schema']}"
        schema = files.get(schema_path)
        if not isinstance(schema, dict):
            continue
        validator = validators.get(schema_path)
        if validator is None:
            validator = validators[schema_path] = compile_schema(schema)
        for env in environments:
            resolved: dict[str, Any] = {}
            for layer in (
                "global.yaml",
                f"environments/{env}.yaml",
                f"apps/{app}/values.yaml",
                f"apps/{app}/envs/{env}.yaml",
            ):
                merge(resolved, files.get(layer))
            pairs += 1
            n = errors(validator, resolved)
            total += n
            invalid += n > 0
    print(f"{pairs} pairs, {invalid} invalid, {total} errors")


if __name__ == "__main__":
    main()
