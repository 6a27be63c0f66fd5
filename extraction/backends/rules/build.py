"""An optional compiled build of the ``rules`` backend's hot modules (mypyc), never stale.

    python -m extraction.backends.rules.build [--force] [--quiet]

compiles ``HOT_MODULES`` with mypyc into ``.cmrx/compiled/rules-<hash>/`` next to the ``extraction``
package (``CMRX_RULES_CACHE`` overrides the folder). ``<hash>`` covers the bytes of those sources, of
this file, of ``compiled.py`` and of the modules they were type-checked against, the Python version
and the platform (``compiled.source_hash``), so the package ``__init__`` (which computes the same hash
at import, well under a millisecond) only ever loads a build made from the sources it sees: an edited
source has another hash, its folder does not exist, and the .py modules run. A second run with
unchanged sources does nothing. Without a C compiler, Python headers or mypy it prints why and exits 0:
the pure-Python modules are the same program, only slower.

``CMRX_RULES_COMPILED=0`` makes the package ignore any build.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

from extraction.backends.rules.compiled import (_EXT, COMPLETE, HOT_MODULES, PACKAGE, ROOT, cache_root,
                                                compiled_dir, group_name, read_sources, shared_lib_name,
                                                source_hash)


# -- building ---------------------------------------------------------------------------------------
def _why_not() -> str | None:
    """Why this machine cannot compile (no mypyc, no C compiler, no Python headers), or None."""
    import sysconfig

    if importlib.util.find_spec("mypyc") is None:
        return "mypy (mypyc) is not installed: pip install -e '.[fast]'"
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed: pip install -e '.[fast]'"
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    if not cc or shutil.which(cc[0]) is None:
        return f"no C compiler ({cc[0] if cc else 'cc'} not found)"
    include = sysconfig.get_paths().get("include", "")
    if not include or not (Path(include) / "Python.h").is_file():
        return f"no Python headers (Python.h not in {include or '?'})"
    return None


def _compile(work: Path, digest: str, quiet: bool) -> Path:
    """mypyc + the C compiler into ``work``; returns the finished folder (pkg/ shims, lib/ library)."""
    import contextlib
    import io

    from mypyc.build import mypycify
    from setuptools import Distribution

    paths = [str(Path(*PACKAGE.split("."), f"{name}.py")) for name in HOT_MODULES]
    options = ["--follow-imports=silent", f"--cache-dir={work / 'mypy_cache'}", "--python-version",
               f"{sys.version_info.major}.{sys.version_info.minor}"]
    cwd = os.getcwd()
    out = io.StringIO()
    os.chdir(ROOT)  # mypy names the modules from the paths (extraction/backends/rules/tokens.py)
    try:
        with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
            extensions = mypycify(options + paths, opt_level="3", group_name=group_name(digest),
                                  target_dir=str(work / "c"))
            dist = Distribution({"name": "cmrx-rules-compiled", "ext_modules": extensions,
                                 "script_name": "build.py",
                                 "script_args": ["-q", "build_ext", "--build-lib", str(work / "lib"),
                                                 "--build-temp", str(work / "obj")]})
            dist.parse_command_line()
            dist.run_commands()
    except BaseException:
        if quiet:
            sys.stdout.write(out.getvalue())
        raise
    finally:
        os.chdir(cwd)
    final = work / "final"
    (final / "pkg").mkdir(parents=True)
    (final / "lib").mkdir()
    lib = shared_lib_name(digest)
    shutil.copy2(work / "lib" / f"{lib}{_EXT}", final / "lib" / f"{lib}{_EXT}")
    for name in HOT_MODULES:
        shutil.copy2(work / "lib" / Path(*PACKAGE.split(".")) / f"{name}{_EXT}", final / "pkg" / f"{name}{_EXT}")
    return final


def build(force: bool = False, quiet: bool = False) -> int:
    """Compile the current sources unless their build exists. 0 also when this machine cannot compile."""
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))
    sources = read_sources()
    digest = source_hash(sources)
    target = compiled_dir(digest)
    if (target / COMPLETE).is_file() and not force:
        say(f"rules: compiled build up to date ({target})")
        return 0
    why = _why_not()
    if why is not None:
        print(f"rules: not compiling, {why}; the pure-Python modules run (same results, slower)", flush=True)
        return 0
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    work = root / f"tmp-rules-{digest}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    t0 = time.perf_counter()
    say(f"rules: compiling {', '.join(HOT_MODULES)} with mypyc (about a minute) ...")
    try:
        final = _compile(work, digest, quiet)
        if read_sources() != sources:  # edited while compiling: this build is of neither version
            print("rules: sources changed during the build; discarded (run it again)", flush=True)
            return 0
        from mypy.version import __version__ as mypy_version

        (final / COMPLETE).write_text(f"{digest}\npython {sys.version.split()[0]}\nmypy {mypy_version}\n"
                                      f"built {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")  # what made it
        if target.exists():  # --force, or a concurrent build finished first
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(final, target)
        except OSError:
            if not (target / COMPLETE).is_file():
                raise
    except Exception as exc:  # noqa: BLE001 - the pure-Python modules still run
        print(f"rules: compiling failed ({type(exc).__name__}: {exc}); the pure-Python modules run", flush=True)
        return 0
    except SystemExit as exc:  # setuptools reports a compiler error this way
        print(f"rules: compiling failed ({exc}); the pure-Python modules run", flush=True)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for old in root.glob("rules-*"):  # builds of older sources are never loaded again
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    say(f"rules: compiled in {time.perf_counter() - t0:.0f} s -> {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="rebuild even when the build is up to date")
    parser.add_argument("--quiet", action="store_true", help="print only when not compiling or on failure")
    parser.add_argument("--check", action="store_true",
                        help="print whether a build of the current sources exists; exit 1 when not")
    args = parser.parse_args(argv)
    if args.check:
        folder = compiled_dir()
        ok = (folder / COMPLETE).is_file()
        print(f"{'up to date' if ok else 'missing'}: {folder}")
        return 0 if ok else 1
    return build(force=args.force, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
