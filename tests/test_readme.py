"""The README's two set-up commands stay true: CI runs the test command verbatim, the quick start
is a search at the `quick` budget that says where its results land and what to run next, and
the README stays a manual (its code blocks, links and tables are checked in test_docs.py)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _quick_start_commands():
    text = README.read_text()
    return re.findall(r"```bash\n(.+?)\n```", text.split("## Python API")[0], flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    test_command = commands[1].strip()
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_main_command_installs_torch_cpu_build_first():
    main = _quick_start_commands()[0]
    assert main.index("torch==2.13.0") < main.index("pip install -e")


def test_quick_start_is_a_quick_search_that_says_what_it_wrote_and_what_next():
    """(That `--budget quick` parses is test_docs.py's test_command_line_parses[README.md:17].)"""
    main = _quick_start_commands()[0]
    search = main.split("&&")[-1].split()
    assert search[:2] == [".venv/bin/nasfpn", "search"], main
    assert search[search.index("--budget") + 1] == "quick"
    name = search[search.index("--name") + 1]
    after = README.read_text().split(main, 1)[1].split("```bash")[0]  # the prose under the command
    for written in (f"runs/{name}/", "leaderboard.md", "best_genotype.yaml", ".png"):
        assert written in after, written
    assert f"nasfpn export runs/{name}" in after
    assert "--budget proxy" in after


def test_readme_is_a_manual():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), "dated runs belong in CHANGELOG.md"
    assert 'pytest -m "not slow"' in text  # the quick loop, beside the command that runs everything
    for doc in ("dsl", "proxy", "search", "cluster", "export"):
        assert f"](docs/{doc}.md)" in text, doc
    assert "](benchmarks/README.md" in text and "](CHANGELOG.md)" in text
