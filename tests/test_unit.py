"""Run each module's C unit test, from the plain and the sanitizer build."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted(p.stem[len("test_"):] for p in (ROOT / "tests/unit").glob("test_*.c"))


@pytest.mark.parametrize("build", ["build", "build-asan"])
@pytest.mark.parametrize("unit", UNITS)
def test_unit(build, unit):
    exe = ROOT / build / f"test_{unit}"
    assert exe.exists(), f"{exe} is not built"
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


AWS_SUITE = ROOT.parent / "shared/corpus/aws-sigv4/v4"


@pytest.mark.skipif(not AWS_SUITE.is_dir(),
                    reason=f"AWS's SigV4 test suite is not at {AWS_SUITE}")
def test_sigv4_against_aws_suite():
    """Besides the repository's own cases, AWS's published test suite,
    where it is beside the clone."""
    r = subprocess.run([str(ROOT / "build-asan/test_sigv4"), str(AWS_SUITE)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_catalog_statements_are_listed():
    """Every statement of the catalog is defined with DB_SQL, so that
    test_plans checks its plan and the statement cache has room for it."""
    loose = [f"{p.name}: {line.strip()}"
             for p in sorted((ROOT / "db").glob("*.c"))
             if p.name != "scratch.c"  # verify's own scratch database
             for line in p.read_text().splitlines()
             if line.startswith("static const char SQL")]
    assert not loose, "define these with DB_SQL: " + "; ".join(loose)


# Static functions that share a name because they do the same thing in two
# programs or two back-ends of one interface.
SAME_JOB = {"usage": "each program's usage line",
            "put": "the S3 and file:// stores' PUT",
            "progress": "each command's progress line on a terminal"}


def test_no_two_static_functions_share_a_name():
    """A name means one thing: a static function named as another file's
    does the same job (SAME_JOB), or is renamed."""
    import re
    seen = {}
    for p in sorted(ROOT.glob("*/*.c")):
        if p.parts[-2] in ("tests", "bench", "build") or \
                p.parts[-2].startswith("build"):
            continue
        for name in set(re.findall(r"^static [\w ]+?[ *](\w+)\(",
                                   p.read_text(), re.M)):
            seen.setdefault(name, []).append(str(p.relative_to(ROOT)))
    twice = {n: fs for n, fs in seen.items()
             if len(fs) > 1 and n not in SAME_JOB}
    assert not twice, twice


def test_sources_are_clang_formatted():
    """Every C file as .clang-format lays it out."""
    files = subprocess.run(["git", "ls-files", "*.c", "*.h"], cwd=ROOT,
                           capture_output=True, text=True,
                           check=True).stdout.split()
    assert files
    bad = [f for f in files if subprocess.run(
        ["clang-format", str(ROOT / f)], capture_output=True, text=True,
        check=True).stdout != (ROOT / f).read_text()]
    assert not bad, f"run clang-format -i on: {bad}"


def test_no_circle_between_modules():
    """Within fs/ and within db/, a file that includes another's header
    uses that file; no two files of a folder use each other, directly or
    around a circle (#26: a change has one place to go). thumbfs.h and
    internal.h, the folders' shared structs with no file of their own,
    do not count."""
    import re
    for folder in ("fs", "db"):
        d = ROOT / folder
        uses = {}
        for c in d.glob("*.c"):
            inc = set(re.findall(rf'#include "{folder}/(\w+)\.h"',
                                 c.read_text()))
            uses[c.stem] = {i for i in inc
                            if i != c.stem and (d / f"{i}.c").exists()}
        # a circle is a path back to where it started
        for start in uses:
            seen, todo = set(), [(start, [start])]
            while todo:
                at, path = todo.pop()
                for nxt in uses[at]:
                    assert nxt != start, \
                        f"{folder}/: a circle: {' -> '.join(path + [nxt])}"
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append((nxt, path + [nxt]))
