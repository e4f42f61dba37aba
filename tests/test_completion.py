"""Shell completion, through the entry point: the script typer installs and the answers it gives."""

from __future__ import annotations

import os
import subprocess
import sys


def complete(words: str, shell: str = "bash") -> list[str]:
    """What the installed completion script gets back for the command line ``words``."""
    parts = words.split(" ")
    env = {**os.environ, "_SDAUDIT_COMPLETE": f"complete_{shell}", "COMP_WORDS": words,
           "COMP_CWORD": str(len(parts) - 1)}
    result = subprocess.run([sys.executable, "-m", "sdaudit"], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_is_offered_and_its_script_calls_back_sdaudit():
    help_text = subprocess.run([sys.executable, "-m", "sdaudit", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--install-completion" in help_text
    assert "--show-completion" in help_text
    script = subprocess.run([sys.executable, "-m", "sdaudit", "--show-completion", "bash"],
                            capture_output=True, text=True, check=False,
                            env={**os.environ, "SHELL": "/bin/bash"}).stdout
    assert "_SDAUDIT_COMPLETE=complete_bash" in script
    assert "complete -o default -F _sdaudit_completion sdaudit" in script


def test_commands_flags_and_choices_complete():
    assert complete("sdaudit sc") == ["scan"]
    assert complete("sdaudit ") == ["layers", "instrument", "scan", "compare"]
    assert complete("sdaudit scan m.onnx --fail") == ["--fail-under"]
    assert complete("sdaudit scan m.onnx --format ") == ["text", "json", "junit", "markdown"]
    assert complete("sdaudit scan m.onnx --device ") == ["auto", "cpu", "cuda"]
