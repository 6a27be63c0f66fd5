"""Which ``rules`` modules run: the compiled build of the current sources, or the .py modules.

The package ``__init__`` calls ``activate(__path__)`` before it imports its submodules. The build
(``python -m extraction.backends.rules.build``) lives in ``.cmrx/compiled/rules-<hash>/``, where
``<hash>`` covers the bytes of the compiled modules' sources, of ``build.py``, of this file and of the
modules they were type-checked against (``DEPENDENCIES``), the Python version and the platform. Only
the folder of the hash of the sources on disk now is ever loaded, so an edited source can never run a
stale compiled module: its hash names a folder that does not exist (until it is built again) and the
.py modules run. Hashing reads ~250 KB: about a millisecond. ``CMRX_RULES_COMPILED=0`` ignores any build.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = "extraction.backends.rules"
# The modules a report spends its time in. category (regex searches) gained 0.4% of instructions when
# compiled, words is data: both stay .py.
HOT_MODULES = ("tokens", "grammar", "lexicon", "document", "tables")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]  # the folder holding the ``extraction`` package (the repository)
# Modules the compiled ones import and were type-checked against (mypyc trusts their signatures): an
# edit of one also retires the build, so compiled code never runs against types it was not built for.
DEPENDENCIES = ("extraction/backends/rules/words.py", "extraction/normalize.py", "schemas/catalog.py")
ENV_SWITCH = "CMRX_RULES_COMPILED"
ENV_CACHE = "CMRX_RULES_CACHE"
COMPLETE = "COMPLETE"  # written last: a folder without it is a build that did not finish
_EXT = importlib.machinery.EXTENSION_SUFFIXES[0]  # '.cpython-311-x86_64-linux-gnu.so'
_FORMAT = b"cmrx-rules-compiled-1"


def source_hash(sources: dict[str, bytes] | None = None) -> str:
    """Hash of the hot modules' sources (``{name: bytes}``, read from the package when None), this
    file, the Python version and the platform: what a compiled build is valid for."""
    if sources is None:
        sources = read_sources()
    h = hashlib.sha256(_FORMAT)
    for part in (sys.implementation.cache_tag or "", _EXT, sys.version, sys.platform):
        h.update(b"\0" + part.encode())
    for name in sorted(sources):
        h.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(sources[name]).digest())
    return h.hexdigest()[:20]


def read_sources() -> dict[str, bytes]:
    """The bytes a build depends on: the compiled modules, ``build.py`` (its options), this file and
    the ``DEPENDENCIES``."""
    sources = {name: (HERE / f"{name}.py").read_bytes() for name in HOT_MODULES}
    for name in ("build", "compiled"):
        sources[name] = (HERE / f"{name}.py").read_bytes()
    for dep in DEPENDENCIES:
        sources[dep] = (ROOT / dep).read_bytes()
    return sources


def cache_root() -> Path:
    """``.cmrx/compiled`` beside the ``extraction`` package (the repository root), or ``$CMRX_RULES_CACHE``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env) if env else ROOT / ".cmrx" / "compiled"


def compiled_dir(digest: str | None = None) -> Path:
    return cache_root() / f"rules-{digest or source_hash()}"


def group_name(digest: str) -> str:
    return f"cmrx_rules_{digest}"


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip() != "0"


def find_build() -> tuple[Path, str] | None:
    """(folder, digest) of the finished build of the current sources, or None."""
    if not enabled():
        return None
    try:
        digest = source_hash()
    except OSError:  # sources not readable (a zip install): no build can match them
        return None
    folder = compiled_dir(digest)
    return (folder, digest) if (folder / COMPLETE).is_file() else None


def activate(path: list[str]) -> Path | None:
    """Before the package imports its submodules: put the build of the current sources first on the
    package ``path`` (its ``__path__``) and load the shared mypyc library they need. None (nothing
    changed) without a build, when ``CMRX_RULES_COMPILED=0``, or when the library does not load."""
    found = find_build()
    if found is None:
        return None
    folder, digest = found
    lib = shared_lib_name(digest)
    if lib not in sys.modules:
        spec = importlib.util.spec_from_file_location(lib, folder / "lib" / f"{lib}{_EXT}")
        if spec is None or spec.loader is None:
            return None
        try:
            module: ModuleType = importlib.util.module_from_spec(spec)  # an extension module runs here
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - an unusable build: the .py modules run
            print(f"cmrx rules: compiled build {folder} not loadable ({exc}); using pure Python", file=sys.stderr)
            return None
        sys.modules[lib] = module  # the modules' shims import it by this name
    pkg = str(folder / "pkg")
    if pkg not in path:
        path.insert(0, pkg)
    return folder


def deactivate(path: list[str], folder: Path) -> None:
    """Undo ``activate`` (a compiled module failed to import): forget what was loaded from the build."""
    pkg = str(folder / "pkg")
    while pkg in path:
        path.remove(pkg)
    for name in HOT_MODULES:
        mod = sys.modules.get(f"{PACKAGE}.{name}")
        # mypyc 1.x names a module's file by its shim (pkg/), 2.x by the shared library (lib/...)
        if mod is not None and Path(str(getattr(mod, "__file__", ""))).is_relative_to(folder):
            del sys.modules[f"{PACKAGE}.{name}"]


def shared_lib_name(digest: str) -> str:
    return f"{group_name(digest)}__mypyc"  # mypyc.common.shared_lib_name


def is_compiled(module: ModuleType) -> bool:
    """Was this module loaded from a compiled build (an extension module, not a .py file)?"""
    return is_compiled_file(str(getattr(module, "__file__", "")))


def is_compiled_file(path: str) -> bool:
    return path.endswith(_EXT)
