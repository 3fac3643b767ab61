"""The benchmark suite says which Python build produced its figures (builds of one version
differ by about 10 % in speed, so figures compare only within one build)."""
from __future__ import annotations

import json
import platform
import sys

from benchmarks.__main__ import interpreter_build, main


def test_json_names_the_interpreter_build(capsys) -> None:
    assert main(["--json", "--only", "no_such_module"]) == 0  # no module selected: only the machine
    printed = json.loads(capsys.readouterr().out)
    build = printed["machine"]["python_build"]
    assert build.startswith(platform.python_implementation() + " " + platform.python_version())
    assert build.endswith(platform.python_compiler() + "]")
    assert sys.executable not in build  # a local path may name the user: not in shared figures
    assert printed["figures"] == {} and printed["errors"] == {}


def test_table_header_names_the_build(capsys) -> None:
    assert main(["--only", "no_such_module"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.endswith(f"Python {platform.python_version()} ({interpreter_build()})")
