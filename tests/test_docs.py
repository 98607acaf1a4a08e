"""The README and docs/ stay true to the code.

- ```python blocks run, top to bottom, one namespace per file, in an empty working directory
  (```python no-run: a snippet for another framework, only compiled);
- every `nasfpn ...` command line in a ```bash or ```console block, in an inline code span, or in
  a manifest under deploy/, parses with the CLI's own parser; every `python benchmarks/X.py`
  names a script that exists;
- ```yaml blocks are YAML; one whose first line is `# budget NAME.yaml` is a valid budget file;
  one whose first line is `# NAME.yaml` is written to that file, and
  validates unless its name starts with `bad`; a ```console block's `$ nasfpn validate|show ...`
  prints exactly the lines under it;
- relative links and images point at files (and at headings, for `#anchor`s into markdown);
- the zoo table is what `nasfpn show` prints, the budget table is the budgets;
- benchmarks/README.md is what benchmarks/summarize.py makes of the committed results.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = DOCS + [ROOT / "benchmarks" / "README.md", ROOT / "CHANGELOG.md", ROOT / "runs" / "README.md"]
SHELL = {"bash", "sh", "console"}
FENCE = re.compile(r"^([ \t]*)```([^\n]*)\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)  # in a list item too
RUN_AT_ALL = ("validate", "show")  # console commands cheap enough to run here


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def blocks(doc: Path) -> list[tuple[str, set[str], str, int]]:
    """(language, flags, text, line of the opening fence) of each fenced block."""
    text = doc.read_text()
    out = []
    for m in FENCE.finditer(text):
        lang, *flags = m.group(2).split() or [""]
        indent = len(m.group(1))
        body = "".join(ln[indent:] if ln[:indent].isspace() else ln for ln in m.group(3).splitlines(True))
        out.append((lang, set(flags), body, text.count("\n", 0, m.start()) + 1))
    return out


def _prose(doc: Path) -> str:
    return FENCE.sub("", doc.read_text())


# -- command lines ------------------------------------------------------------------------------------

def _segments(line: str):
    """Simple commands of one shell line, env assignments dropped, through `bash -c` and `-- CMD`."""
    line = re.sub(r"\$\([^)]*\)", "SUBST", line)
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    segs: list[list[str]] = [[]]
    for tok in lex:
        if tok and set(tok) <= set(";&|"):
            segs.append([])
        else:
            segs[-1].append(tok)
    for seg in segs:
        while seg and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", seg[0]):
            seg = seg[1:]
        if not seg:
            continue
        if seg[0] in ("bash", "sh") and "-c" in seg:
            yield from _segments(seg[seg.index("-c") + 1])
        elif "--" in seg and Path(seg[0]).name != "nasfpn":
            yield from _segments(shlex.join(seg[seg.index("--") + 1:]))
        else:
            yield seg


def _shell_lines(lang: str, text: str):
    """(offset in the block, command line) of a bash/console block; `\\` continuations joined."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start, line = i, lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i]
        i += 1
        if lang == "console":
            if line.startswith("$ "):
                yield start, line[2:]
        elif line.strip() and not line.lstrip().startswith("#"):
            yield start, line


def _commands():
    """(id, argv, whole) of every command line the docs and deploy/ show. Blocks and manifests hold
    whole commands; an inline code span may name a subcommand and some of its options only."""
    found = []
    for doc in DOCS:
        for lang, _, text, at in blocks(doc):
            if lang in SHELL:
                for offset, line in _shell_lines(lang, text):
                    found += [(f"{_rel(doc)}:{at + 1 + offset}", seg, True) for seg in _segments(line)]
        for span in re.findall(r"`([^`\n]+)`", _prose(doc)):
            if re.match(r"^(\.venv/bin/)?(nasfpn|python3?) ", span):
                found += [(f"{_rel(doc)}: `{span}`", seg, False) for seg in _segments(span)]
    for manifest in sorted((ROOT / "deploy").rglob("*.yaml")):
        for value in _strings(list(yaml.safe_load_all(manifest.read_text()))):
            if value.strip().startswith("nasfpn "):
                found += [(_rel(manifest), seg, True) for seg in _segments(value)]
    return [(where, seg, whole) for where, seg, whole in found
            if Path(seg[0]).name == "nasfpn" or (re.match(r"^(\.venv/bin/)?python3?$", seg[0]) and len(seg) > 1
                                                 and seg[1].startswith("benchmarks/"))]


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


COMMANDS = _commands()


def test_the_docs_show_commands():
    """The collection above finds what it should: a doc with shell blocks yields commands."""
    with_shell = {_rel(d) for d in DOCS if any(lang in SHELL for lang, *_ in blocks(d))}
    assert with_shell <= {where.split(":")[0] for where, _, whole in COMMANDS if whole}
    assert any(where.startswith("deploy/") for where, *_ in COMMANDS)
    assert len(COMMANDS) >= 30, COMMANDS


@pytest.mark.parametrize("argv, whole", [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_command_line_parses(argv, whole):
    if Path(argv[0]).name != "nasfpn":
        assert (ROOT / argv[1]).is_file(), f"{argv[1]}: no such script"
        return
    from nasfpn.cli import build_parser

    if not whole:  # `nasfpn show --draw` in prose: the subcommand and the options it names exist
        commands = build_parser()._subparsers._group_actions[0].choices
        assert len(argv) > 1 and argv[1] in commands, f"`{shlex.join(argv)}`: no subcommand {argv[1:2]}"
        unknown = [a.split("=")[0] for a in argv[2:] if a.startswith("--")
                   and a.split("=")[0] not in commands[argv[1]]._option_string_actions]
        assert not unknown, f"`{shlex.join(argv)}`: nasfpn {argv[1]} has no option {unknown}"
        return
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv[1:])
    except SystemExit as e:
        pytest.fail(f"`{shlex.join(argv)}` does not parse (exit {e.code}): {err.getvalue().strip()}")


# -- python, yaml and console blocks ------------------------------------------------------------------

def _ids(docs):
    return [_rel(d) for d in docs]


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_python_blocks_run(doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for lang, flags, text, at in blocks(doc):
        if lang != "python":
            continue
        assert flags <= {"no-run"}, f"{_rel(doc)}:{at}: unknown flags {flags}"
        code = compile("\n" * at + text, str(doc), "exec")  # tracebacks name the doc's own lines
        if "no-run" not in flags:
            exec(code, namespace)


def _named_files(doc: Path) -> dict[str, str]:
    files = {}
    for lang, _, text, _ in blocks(doc):
        first = text.splitlines()[0] if text else ""
        m = re.match(r"^# ([\w.-]+\.yaml)\s*$", first)
        if lang == "yaml" and m:
            files[m.group(1)] = text
    return files


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_yaml_blocks_are_yaml_and_named_genotypes_validate(doc, tmp_path):
    import nasfpn

    for lang, _, text, at in blocks(doc):
        if lang == "yaml":
            try:
                yaml.safe_load(text)
            except yaml.YAMLError as e:
                pytest.fail(f"{_rel(doc)}:{at}: not YAML: {e}")
    for name, text in _named_files(doc).items():
        (tmp_path / name).write_text(text)
        if not name.startswith("bad"):
            nasfpn.read(tmp_path / name)
    from nasfpn.dsl.budget import read_budget

    for lang, _, text, _at in blocks(doc):
        m = re.match(r"^# budget ([\w.-]+\.yaml)", text)
        if lang == "yaml" and m:
            (tmp_path / m.group(1)).write_text(text)
            read_budget(tmp_path / m.group(1))  # a budget file the docs show is a valid one


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_console_output_is_what_the_command_prints(doc, tmp_path, monkeypatch):
    from nasfpn.cli import main

    monkeypatch.chdir(tmp_path)
    for name, text in _named_files(doc).items():
        (tmp_path / name).write_text(text)
    for lang, _, text, at in blocks(doc):
        if lang != "console":
            continue
        for chunk in re.split(r"^\$ ", text, flags=re.M)[1:]:
            command, *expected = chunk.rstrip("\n").split("\n")
            argv = shlex.split(command)
            assert argv[0] == "nasfpn" and argv[1] in RUN_AT_ALL, f"{_rel(doc)}:{at}: not run here: {command}"
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                main(argv[1:])
            assert out.getvalue().rstrip("\n").split("\n") == expected, f"{_rel(doc)}:{at}: $ {command}"


# -- links --------------------------------------------------------------------------------------------

def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", _prose(md), flags=re.M)}


@pytest.mark.parametrize("doc", LINKED, ids=_ids(LINKED))
def test_relative_links_point_at_files(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _prose(doc)):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {_rel(file)}")
    assert not broken, f"{_rel(doc)}: " + "; ".join(broken)


def test_headline_figures_are_in_what_they_link_to():
    """Every number in a bullet of the README's headline figures is in a file that bullet links."""
    section = (ROOT / "README.md").read_text().split("## Headline figures")[1].split("\n## ")[0]
    bullets = re.findall(r"^- (.+?)(?=^- |\Z)", section, flags=re.M | re.S)
    assert len(bullets) >= 5
    for bullet in bullets:
        targets = [t.partition("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", bullet)]
        assert targets, f"no link in: {bullet}"
        text = "".join((ROOT / t).read_text() for t in targets)
        for number in re.findall(r"\d+\.\d+", bullet):
            assert number in text, f"{number} is in none of {targets}: {bullet}"


# -- tables -------------------------------------------------------------------------------------------

def _table(doc: Path, heading: str) -> list[list[str]]:
    section = doc.read_text().split(f"\n## {heading}\n")[1].split("\n## ")[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows[2:]]


def test_budget_table_is_the_presets():
    from nasfpn.dsl.budget import budget_names, read_budget

    rows = {r[0].strip("`"): r for r in _table(ROOT / "docs" / "proxy.md", "Budgets")}
    assert set(rows) == set(budget_names()), "docs/proxy.md's budget table and budgets/*.yaml list other budgets"
    for name in budget_names():
        b = read_budget(name)
        _, images, size, schedule, backbone, init, _ = rows[name]
        assert images == f"{b.train_images} / {b.val_images}", name
        assert size == f"{b.image_size} px", name
        assert schedule == f"{b.steps} x {b.batch}", name
        assert backbone == {"cached": "frozen, cached", "frozen": "frozen, live",
                            "train": "trained end to end"}[b.backbone_mode], name
        assert init == {"passthrough": "pass-through", "default": "default"}[b.neck_init], name


def test_budget_field_table_is_every_field():
    from nasfpn.dsl.budget import FIELDS, Budget

    rows = {r[0].strip("`"): r for r in _table(ROOT / "docs" / "proxy.md", "Budget files")}
    assert list(rows) == list(FIELDS), "docs/proxy.md's field table and nasfpn/dsl/budget.py's FIELDS differ"
    for name, row in rows.items():
        default = getattr(Budget("x"), name) if name != "name" else None
        if default is not None:
            shown = row[1].strip("`")
            if isinstance(default, bool):
                default = str(default).lower()
            assert shown == (str(default) if not isinstance(default, tuple) else ", ".join(map(str, default))), name


@pytest.mark.slow
def test_zoo_table_is_what_show_prints():
    import nasfpn
    from nasfpn.cli import main

    rows = _table(ROOT / "README.md", "The zoo")
    assert sorted(r[0].strip("`") for r in rows) == sorted(nasfpn.zoo_names("genotype"))
    # In a fresh interpreter, as a user runs it: once a process has trained, torch decomposes
    # bilinear upsampling before the FLOP counter sees it, and necks that use it count more.
    names = [row[0].strip("`") for row in rows]
    script = ("import sys\nfrom nasfpn.cli import main\nfor name in sys.argv[1:]:\n"
              "    main(['show', name, '--in-channels', '512,1024,2048', '--image-size', '640'])\n")
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shown = [line for line in done.stdout.splitlines() if line.startswith("params ")]
    assert len(shown) == len(rows), done.stdout[-500:]
    for row, line in zip(rows, shown):
        params, flops = row[3], row[4].split(" (")[0]
        assert f"params {params}, FLOPs {flops} at 640x640" in line, (row[0], line)
    text = " ".join((ROOT / "README.md").read_text().split())
    for space in nasfpn.zoo_names("space"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["show", space])
        size = re.search(r"([\d.]+)e\+(\d+) points", out.getvalue())
        assert f"`{space}`" in text and f"{size.group(1)}e{size.group(2)} points" in text, space


# -- benchmarks/README.md -----------------------------------------------------------------------------

def _benchmark(name: str):
    """benchmarks/NAME.py as a module (the folder is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_readme_is_generated_from_the_results():
    summarize = _benchmark("summarize")
    assert (ROOT / "benchmarks" / "README.md").read_text() == summarize.render(), \
        "benchmarks/README.md is not what the results give: run python benchmarks/summarize.py"


def test_summarize_derives_kendall_tau_as_the_fidelity_benchmark_does():
    summarize = _benchmark("summarize")
    assert summarize.kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert summarize.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert summarize.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert summarize.discordant_pairs({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 3, "c": 2}) == (1, 3)


def test_search_efficiency_leaves_an_interrupted_search_to_resume(tmp_path, monkeypatch):
    import nasfpn.search

    bench = _benchmark("search_efficiency")
    calls = []

    def interrupted(opts, resume=None):
        calls.append((opts.name, resume))
        (tmp_path / opts.name).mkdir(exist_ok=True)
        return tmp_path / opts.name, False

    monkeypatch.setattr(nasfpn.search, "run_search", interrupted)
    with pytest.raises(SystemExit, match="tpe-s1: interrupted after 0 of 40 trials"):
        bench.run_one("tpe", 1, 40, tmp_path, None, 2, [])
    assert calls == [("tpe-s1", None)]
    assert not (tmp_path / "tpe-s1" / "benchmark_timing.json").exists()
    assert bench.run_one("tpe", 1, 40, tmp_path, None, 2, [], train=False) is None


def test_search_efficiency_never_counts_a_search_made_under_another_budget(tmp_path):
    from nasfpn.dsl.budget import read_budget

    bench = _benchmark("search_efficiency")
    (tmp_path / "random-s0").mkdir()
    fcos = read_budget("proxy", ["head=fcos"]).as_dict()
    (tmp_path / "random-s0" / "manifest.json").write_text(json.dumps({"budget": fcos, "args": {}, "space": {}}))
    with pytest.raises(SystemExit, match=r"random-s0: searched under another budget \(head fcos, not retina\)"):
        bench.run_one("random", 0, 40, tmp_path, None, 2, [], train=False)
    assert bench.run_one("random", 0, 40, tmp_path, None, 2, ["head=fcos"], train=False) is None  # not finished
