"""Every code block of the README and docs/ is run or checked here, so the docs cannot drift
from the product:

- `yaml` blocks are parsed; a configuration fragment is loaded as a workspace
  configuration (merged into a minimal one), conditions are compiled;
- `sh` blocks: every `touchpoint` command line is parsed by the real command line (the
  command, its subcommands and every option must exist, with valid values); `make` targets
  must be in the Makefile; `curl` lines must name routes the app serves;
- `python` blocks are executed: the Segment SDK example against a real server, whose
  profile must then hold what the block sent; the signature example against the
  verification the server runs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from typer._click.exceptions import UsageError

from tests.conftest import SECRET_KEY, TEST_CONFIG, WRITE_KEY, bearer, write_config
from touchpoint.api.app import create_app
from touchpoint.cli.main import app as cli_app
from touchpoint.config.settings import load_settings
from touchpoint.config.workspace import parse_config
from touchpoint.core.conditions import compile_condition
from touchpoint.core.identity_verification import verify_user_hash
from touchpoint.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    language: str
    text: str

    def __str__(self) -> str:
        return f"{self.document}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(str(path.relative_to(ROOT)), line, match.group(1), match.group(2)))
    return found


BLOCKS = _blocks()


def _of(language: str) -> list[Any]:
    return [pytest.param(block, id=str(block)) for block in BLOCKS if block.language == language]


def test_every_block_has_a_language_this_file_checks() -> None:
    """`text` is for diagrams and sample output; everything else is code, checked below."""
    known = ("yaml", "sh", "python", "text")
    unchecked = [str(block) for block in BLOCKS if block.language not in known]
    assert unchecked == [], f"code blocks no test checks (tag them {', '.join(known)}): {unchecked}"


# -- yaml ----------------------------------------------------------------------------------

BASE = {"workspace": "docs", "sources": [{"name": "base", "write_key": "wk_docs_base_key"}]}


def _fill(value: Any) -> Any:
    """The docs write keys as `wk_...`; make them real (unique) ones."""
    if isinstance(value, dict):
        return {key: _fill(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item) for item in value]
    if isinstance(value, str) and value.endswith("..."):
        return value.replace("...", f"docs_{abs(hash(value)) % 10**8:08d}")
    return value


@pytest.mark.parametrize("block", _of("yaml"))
def test_yaml_blocks_load(block: Block) -> None:
    lines = [line for line in block.text.splitlines() if line.strip()]
    if all(line.startswith(("condition:", "#")) for line in lines):
        for line in lines:
            if line.startswith("condition:"):
                compile_condition(yaml.safe_load(line)["condition"])
        return
    data = yaml.safe_load(block.text)
    assert isinstance(data, dict), f"{block}: a configuration fragment is a mapping"
    merged = {**BASE, **_fill(data)}
    if "sources" in data:
        merged["sources"] = [*BASE["sources"], *_fill(data["sources"])]
    parse_config(merged)


# -- sh ------------------------------------------------------------------------------------


def _commands(text: str) -> list[list[str]]:
    """The command lines of a shell block: continuations joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    commands, pending = [], ""
    for line in joined.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quote spans lines: read on
            continue
        commands.append(words)
        pending = ""
    assert not pending, f"an unclosed quote in: {pending}"
    return commands


def _parse_touchpoint(words: list[str]) -> None:
    """Parse `touchpoint <words>` as the real command line does, down to the last
    subcommand, without running it: an unknown command or option, a missing argument or a
    bad value raises Typer's UsageError."""
    command: Any = typer.main.get_command(cli_app)
    context = command.make_context("touchpoint", list(words))
    while hasattr(command, "resolve_command"):
        remaining = [*getattr(context, "_protected_args", []), *context.args]
        if not remaining:
            break
        name, command, rest = command.resolve_command(context, remaining)
        context = command.make_context(name, rest, parent=context)


def _routes() -> list[tuple[str, re.Pattern[str]]]:
    """The routes of the OpenAPI document, as patterns of their paths."""
    settings = load_settings(None, Path("/nonexistent"), environ={})
    routes = []
    for path in create_app(settings).openapi()["paths"]:
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", path)
        routes.append((path, re.compile(f"^{pattern}$")))
    return routes


@pytest.mark.parametrize("block", _of("sh"))
def test_shell_blocks_name_real_commands_options_and_routes(block: Block) -> None:
    makefile = (ROOT / "Makefile").read_text()
    routes = _routes()
    for words in _commands(block.text):
        program, *arguments = words
        if program == "export":
            continue
        if program.endswith("touchpoint"):
            try:
                _parse_touchpoint(arguments)
            except UsageError as error:
                pytest.fail(f"{block}: `touchpoint {' '.join(arguments)}`: {error}")
        elif program == "make":
            for target in arguments:
                assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"{block}: {target}"
        elif program == "curl":
            urls = [word for word in arguments if word.startswith("http://")]
            for url in urls:
                path = httpx.URL(url).path
                assert any(pattern.match(path) for _, pattern in routes), f"{block}: {path}"
        else:
            pytest.fail(f"{block}: no check for the command {program!r}")


# -- python --------------------------------------------------------------------------------


def _python(marker: str) -> Block:
    matching = [block for block in BLOCKS if block.language == "python" and marker in block.text]
    assert len(matching) == 1, f"one python block with {marker!r}"
    return matching[0]


def test_every_python_block_is_run_here() -> None:
    run = {str(_python("segment.analytics")), str(_python("user_hash ="))}
    assert {str(block) for block in BLOCKS if block.language == "python"} == run


@pytest.mark.slow
def test_the_segment_sdk_example_runs_against_a_real_server(tmp_path: Path) -> None:
    block = _python("segment.analytics")
    config = write_config(tmp_path, TEST_CONFIG)
    server = ServerProcess(tmp_path / "data", "--config", str(config)).start()
    try:
        code = block.text.replace('"wk_..."', repr(WRITE_KEY)).replace(
            "http://127.0.0.1:8000", server.url
        )
        namespace: dict[str, Any] = {}
        exec(compile(code, str(block), "exec"), namespace)
        namespace["client"].flush()
        deadline = time.monotonic() + 15
        profile: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = httpx.get(
                f"{server.url}/v1/profiles/user_id/user-1", headers=bearer(SECRET_KEY)
            )
            if answer.status_code == 200 and answer.json()["features"].get("revenue"):
                profile = answer.json()
                break
            time.sleep(0.1)
        assert profile, "the README's SDK example reached no profile"
        assert profile["traits"]["plan"] == "pro"
        assert profile["features"]["revenue"] == 42
        assert profile["identities"]["email"][0].startswith("h1:")  # hashed, as documented
    finally:
        server.stop()


def test_the_signature_example_computes_what_the_server_verifies() -> None:
    block = _python("user_hash =")
    secret, user_id = "a-site-identity-secret-0123456789", "user-42"
    namespace: dict[str, Any] = {"hmac": hmac, "hashlib": hashlib, "secret": secret}
    namespace["user_id"] = user_id
    exec(compile(block.text, str(block), "exec"), namespace)
    assert verify_user_hash(secret, user_id, namespace["user_hash"])


# -- references to tests -------------------------------------------------------------------

REFERENCE = re.compile(r"(tests/[\w/]+\.py|…)::(test_\w+)")


def test_every_test_the_docs_name_exists() -> None:
    """A claim names the test behind it (`tests/x.py::test_y`, or `…::test_y` for the file
    named last): that test must exist, or the claim has lost its proof."""
    missing = []
    for path in DOCUMENTS:
        current: str | None = None
        for match in REFERENCE.finditer(path.read_text(encoding="utf-8")):
            if match.group(2) == "test_name":  # the form itself, explained
                continue
            file = current if match.group(1) == "…" else match.group(1)
            current = file
            assert file is not None, f"{path.name}: `…::{match.group(2)}` names no file before"
            source = ROOT / file
            if not source.exists() or f"def {match.group(2)}(" not in source.read_text():
                missing.append(f"{path.relative_to(ROOT)}: {file}::{match.group(2)}")
    assert missing == [], missing
