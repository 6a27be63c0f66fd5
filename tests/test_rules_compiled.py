"""The compiled (mypyc) build of the rules backend: same results as the .py modules, never stale.

``make compile`` (``python -m extraction.backends.rules.build``) builds it; the comparison is skipped
only when no build of the current sources exists (no C compiler, or not built yet).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from extraction.backends.rules import compiled

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "dev"
NO_BUILD = "no compiled build of the current rules sources (make compile; needs a C compiler and mypy)"

# Run in a child process: every report's values, evidence, category and reason, and the raw candidates.
_DUMP = r"""
import json, random, sys
from pathlib import Path

import extraction.backends.rules as rules
from extraction.backends.rules import extract_rules
from extraction.backends.rules.document import DocumentReader
from extraction.backends.rules.lexicon import get_lexicon
from extraction.normalize import clean_text
from training.synth import generate
from training.synth.layouts import LAYOUTS

def texts():
    dev = Path(sys.argv[1])
    for p in sorted(dev.glob("*.txt")) if dev.is_dir() else ():
        raw = p.read_text(encoding="utf-8")
        yield raw
        yield clean_text(raw)
    for r in generate(240, seed=5151, layouts=list(LAYOUTS)):
        yield clean_text(r.text)
    for r in generate(60, seed=5152, layouts=list(LAYOUTS), inconsistency_rate=0.3):
        yield r.text
    rnd = random.Random(11)
    yield bytes(rnd.randrange(256) for _ in range(20_000)).decode("latin-1")  # binary noise
    yield "".join(chr(rnd.randrange(32, 0x2FFF)) for _ in range(5_000))  # unicode noise
    yield "LVEF 55 % and RVEF 48 %, LVEDV 150 ml " * 2_500  # one 100,000-character line
    yield "x" * 100_000
    yield "LV EDV | 150 | ml\n" * 20_000  # past the length bound
    yield ""
    yield "\n\n|||\n- - -\n1.\n:\n"

reader = DocumentReader(get_lexicon())
for text in texts():
    r = extract_rules(text)
    cands = [[c.key, c.value, c.priority, c.spans, c.original, c.extra_spans]
             for c in reader.candidates(text)]
    print(json.dumps({"values": r.values, "category": r.category, "reason": r.category_reason,
                      "evidence": {k: v.model_dump() for k, v in r.evidence.items()}, "candidates": cands},
                     sort_keys=True))
print(json.dumps({"compiled": rules.COMPILED}))
"""

_WHICH = r"""
import json
import extraction.backends.rules as rules
from extraction.backends.rules import compiled
print(json.dumps({"compiled": rules.COMPILED, "package": rules.__file__, "files": {name: getattr(rules, name).__file__
                  for name in compiled.HOT_MODULES}}))
"""


def _have_build() -> bool:
    return (compiled.compiled_dir() / compiled.COMPLETE).is_file()


def _run(code: str, *args: str, switch: str, pythonpath: str | None = None, cache: str | None = None,
         cwd: Path = ROOT) -> list[dict]:
    """``python -c code args`` with CMRX_RULES_COMPILED=switch; its output lines as JSON.
    (``-c`` puts the working directory first on the path: it decides which ``extraction`` loads.)"""
    env = dict(os.environ, CMRX_RULES_COMPILED=switch)
    env["PYTHONPATH"] = pythonpath or os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if cache is not None:
        env["CMRX_RULES_CACHE"] = cache
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=600, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.skipif(not _have_build(), reason=NO_BUILD)
def test_compiled_and_pure_python_give_identical_results():
    fast = _run(_DUMP, str(DEV), switch="1")
    slow = _run(_DUMP, str(DEV), switch="0")
    assert fast[-1] == {"compiled": True} and slow[-1] == {"compiled": False}
    assert len(fast) == len(slow) > 300
    for i, (a, b) in enumerate(zip(fast[:-1], slow[:-1])):
        assert a == b, f"report {i} differs"
    # the corpus is no trivial one: values, tables, evidence and categories
    assert sum(1 for r in slow[:-1] for v in r["values"].values() if v is not None) > 3000
    assert sum(1 for r in slow[:-1] if r["category"]) > 250


def test_an_edited_source_has_another_hash():
    sources = compiled.read_sources()
    digest = compiled.source_hash(sources)
    assert digest == compiled.source_hash()  # the same bytes: the same build
    for name in sources:
        edited = dict(sources, **{name: sources[name] + b"\n# edited\n"})
        assert compiled.source_hash(edited) != digest, name
        swapped = dict(sources, **{name: sources[name].replace(b"a", b"b", 1)})
        assert compiled.source_hash(swapped) != digest, name
    assert compiled.compiled_dir(digest).name == f"rules-{digest}"


@pytest.mark.skipif(not _have_build(), reason=NO_BUILD)
def test_an_edited_copy_never_loads_the_build(tmp_path):
    """A copy of the package loads the build while its sources match; one edit, and it runs the .py."""
    copy = tmp_path / "src"
    for package in ("extraction", "schemas"):  # the compiled modules and what the hash also covers
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    path = os.pathsep.join([str(copy), str(ROOT)])
    cache = str(compiled.cache_root())
    same = _run(_WHICH, switch="1", pythonpath=path, cache=cache, cwd=copy)[0]
    assert same["compiled"] is True
    assert same["package"].startswith(str(copy))
    assert all(f.startswith(str(compiled.compiled_dir())) for f in same["files"].values())
    for edit in ("extraction/backends/rules/grammar.py", "extraction/normalize.py"):
        source = copy / edit
        before = source.read_text(encoding="utf-8")
        source.write_text(before + "\n# an edit\n", encoding="utf-8")
        edited = _run(_WHICH, switch="1", pythonpath=path, cache=cache, cwd=copy)[0]
        assert edited["compiled"] is False, edit
        assert all(f.startswith(str(copy)) and f.endswith(".py") for f in edited["files"].values())
        source.write_text(before, encoding="utf-8")
    assert _run(_WHICH, switch="1", pythonpath=path, cache=cache, cwd=copy)[0]["compiled"] is True  # undone


def test_switch_off_loads_the_py_modules():
    which = _run(_WHICH, switch="0")[0]
    assert which["compiled"] is False
    assert all(f.endswith(".py") and f.startswith(str(ROOT / "extraction")) for f in which["files"].values())


@pytest.mark.skipif(not _have_build(), reason=NO_BUILD)
def test_switch_on_loads_the_build():
    which = _run(_WHICH, switch="1")[0]
    assert which["compiled"] is True
    build = compiled.compiled_dir()
    for name, f in which["files"].items():  # extension modules of this build (pkg/ or lib/: mypyc 1.x or 2.x)
        assert Path(f).is_relative_to(build) and compiled.is_compiled_file(f), (name, f)


@pytest.mark.skipif(not _have_build(), reason=NO_BUILD)
def test_an_unimportable_build_falls_back_to_the_py_modules(tmp_path):
    """A build whose first-imported module is damaged: the package forgets the build, the .py modules run."""
    build = compiled.compiled_dir()
    damaged = tmp_path / "cache" / build.name
    shutil.copytree(build, damaged)
    (damaged / "pkg" / f"document{compiled._EXT}").write_bytes(b"not a shared object")
    which = _run(_WHICH, switch="1", cache=str(tmp_path / "cache"))[0]
    assert which["compiled"] is False
    assert all(f.endswith(".py") and f.startswith(str(ROOT / "extraction")) for f in which["files"].values())


def test_this_process_reports_what_it_runs():
    import extraction.backends.rules as rules

    files = [getattr(rules, name).__file__ for name in compiled.HOT_MODULES]
    assert rules.COMPILED == all(not f.endswith(".py") for f in files)
    assert rules.COMPILED == (compiled.enabled() and _have_build())
