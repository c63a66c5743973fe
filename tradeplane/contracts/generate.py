"""Generate (or check) ``signal_pb2.py`` and ``signal_pb2.pyi`` from ``signal.proto``.

The generated modules are committed so that no runtime image needs a protobuf compiler; this module is
the single way to produce them, so a test can regenerate into memory and compare byte for byte (a stale
file fails the suite, like ``tradeplane crds --check``). The compiler is ``grpcio-tools`` (a pinned dev
dependency: it bundles protoc and pins the protobuf runtime range the output needs).

    .venv/bin/python -m tradeplane.contracts.generate           # write
    .venv/bin/python -m tradeplane.contracts.generate --check   # exit 1 when a file is stale
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

PACKAGE_DIR: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = PACKAGE_DIR.parents[1]
PROTO: Final = "tradeplane/contracts/signal.proto"
"""The schema, relative to the repository root (also its name in the descriptor pool)."""
OUTPUTS: Final = ("signal_pb2.py", "signal_pb2.pyi")

HEADER: Final = (
    f"# Generated from {PROTO} by grpcio-tools' protoc: do not edit.\n"
    "# Regenerate after changing the .proto: .venv/bin/python -m tradeplane.contracts.generate\n"
    "# (a test fails while this file and the .proto are out of step).\n"
)


def generated_files() -> dict[Path, str]:
    """Run protoc on :data:`PROTO` into a temporary directory: output path → text, with :data:`HEADER`.

    Raises ``RuntimeError`` when protoc fails (its message goes to stderr).
    """
    from grpc_tools import protoc  # dev dependency: imported only when generating

    with tempfile.TemporaryDirectory(prefix="tradeplane-protoc-") as tmp:
        args = ["protoc", f"-I{REPO_ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}", str(REPO_ROOT / PROTO)]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"protoc failed on {PROTO} (exit {rc})")
        out_dir = Path(tmp) / Path(PROTO).parent
        return {PACKAGE_DIR / name: HEADER + (out_dir / name).read_text(encoding="utf-8") for name in OUTPUTS}


def stale_files() -> list[Path]:
    """The committed generated files that are missing or differ from a fresh generation."""
    return [p for p, text in generated_files().items() if not p.is_file() or p.read_text(encoding="utf-8") != text]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the generated files (exit 0), or with ``--check`` write nothing and exit 1 when any is stale."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["--check"]):
        print("usage: python -m tradeplane.contracts.generate [--check]", file=sys.stderr)
        return 2
    if args == ["--check"]:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(REPO_ROOT)}", file=sys.stderr)
        if stale:
            print("run: .venv/bin/python -m tradeplane.contracts.generate", file=sys.stderr)
            return 1
        print(f"{len(OUTPUTS)} generated files are up to date")
        return 0
    for path, text in generated_files().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
