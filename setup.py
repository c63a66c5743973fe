"""Package mapping only; all metadata lives in pyproject.toml.

The layers sit in top-level folders (the folder says which layer) but import as ``tradeplane.<layer>``.
``operator/`` is never importable as top-level ``operator``: that name belongs to the standard library.
"""

from setuptools import find_packages, setup

LAYERS = ("engine", "workloads", "operator", "rl")

packages = find_packages(include=["tradeplane", "tradeplane.*"])
for layer in LAYERS:
    packages.append(f"tradeplane.{layer}")
    packages += [f"tradeplane.{layer}.{sub}" for sub in find_packages(where=layer)]

setup(
    packages=packages,
    package_dir={"tradeplane": "tradeplane", **{f"tradeplane.{layer}": layer for layer in LAYERS}},
)
