"""The README's two quick-start commands stay true: CI runs the test command verbatim, and the
commands the README shows for the CLI parse."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands():
    text = (ROOT / "README.md").read_text()
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
