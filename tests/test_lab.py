"""`make lab` starts JupyterLab with the book's kernel and widgets, and runs a chapter's cells.

The test runs the Makefile's own command (so the README's instruction cannot break silently),
headless on a free loopback port with a random token, then talks to the server as JupyterLab
does: its page, a session for the first chapter (REST), and the kernel's websocket, through
which it runs the chapter's first code cells. Everything it started is shut down at the end.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
START_TIMEOUT_S = 90
CELL_TIMEOUT_S = 120
FIRST_CELLS = 3
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_chapter() -> Path:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            if chapter["file"].startswith("chapters/"):
                return ROOT / f"{chapter['file']}.ipynb"
    raise AssertionError("_toc.yml lists no chapter")


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token and process (the leader of its own group)."""

    port: int
    token: str
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, method: str, path: str, body: object = None) -> dict:
        status, payload = self.request(method, path, body)
        assert 200 <= status < 300, f"{method} {path} answered {status}: {payload[:300]!r}"
        return json.loads(payload)


def _wait_until_up(lab: Lab, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            pytest.fail(f"`make lab` exited with {lab.process.returncode}:\n{log.read_text()}")
        try:
            if lab.request("GET", "api/status")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {START_TIMEOUT_S} s:\n{log.read_text()}")


def _stop(lab: Lab) -> None:
    """Ask the server to shut down (it stops its kernels); end the process group if it hangs."""
    try:
        lab.request("POST", "api/shutdown")
    except OSError:
        pass
    try:
        lab.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(lab.process.pid, signal.SIGTERM)
        lab.process.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("lab")
    # The user's own Jupyter configuration and runtime files stay out of the way.
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config")}
    env["JUPYTER_RUNTIME_DIR"] = str(home / "runtime")
    args = (
        f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 "
        f"--IdentityProvider.token={token} --ServerApp.open_browser=False"
    )
    log = home / "lab.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    running = Lab(port=port, token=token, process=process)
    try:
        _wait_until_up(running, log)
        yield running
    finally:
        _stop(running)
    assert process.returncode is not None


def test_page_is_jupyterlab_with_the_widget_extension(lab: Lab) -> None:
    status, body = lab.request("GET", "lab")
    assert status == 200
    page = body.decode()
    assert "<title>JupyterLab</title>" in page
    config = json.loads(
        re.search(
            r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S
        )[1]
    )
    assert config["appName"] == "JupyterLab" and config["appVersion"].startswith("4.")
    extensions = {extension["name"] for extension in config["federated_extensions"]}
    assert WIDGETS_EXTENSION in extensions, (
        f"ipywidgets' JupyterLab extension missing: {extensions}"
    )
    assert Path(config["serverRoot"]).resolve() == (ROOT / "chapters").resolve()


def in_venv(executable: str) -> bool:
    """Whether `executable` is the project's environment's interpreter (not the one it links to)."""
    return Path(os.path.abspath(executable)).is_relative_to(VENV)


def test_kernel_is_the_books_environment(lab: Lab) -> None:
    specs = lab.json("GET", "api/kernelspecs")
    argv = specs["kernelspecs"][specs["default"]]["spec"]["argv"]
    assert in_venv(argv[0]), argv


def _message(session: str, code: str) -> dict:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "session": session,
            "username": "test",
            "version": "5.3",
            "date": datetime.datetime.now(datetime.UTC).isoformat(),
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    }


async def _run_cells(url: str, cells: list[str]) -> list[tuple[str, list[str]]]:
    """Each cell's reply status and text outputs (stream, results, errors), in order."""
    connection = await websocket_connect(url)
    session, results = uuid.uuid4().hex, []
    try:
        for code in cells:
            request = _message(session, code)
            connection.write_message(json.dumps(request))
            texts, status = [], None
            while status is None:
                raw = await connection.read_message()
                assert raw is not None, "the kernel's websocket closed"
                message = json.loads(raw)
                if message["parent_header"].get("msg_id") != request["header"]["msg_id"]:
                    continue
                kind, content = message["msg_type"], message["content"]
                if kind == "stream":
                    texts.append(content["text"])
                elif kind in ("execute_result", "display_data"):
                    texts.append(content["data"].get("text/plain", ""))
                elif kind == "error":
                    texts.append(f"{content['ename']}: {content['evalue']}")
                elif kind == "execute_reply":
                    status = content["status"]
            results.append((status, texts))
    finally:
        connection.close()
    return results


def test_first_chapter_cells_run_through_the_server(lab: Lab) -> None:
    chapter = first_chapter()
    notebook = json.loads(chapter.read_text())
    code = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    probe = (
        "import os, sys, ipywidgets, torch\n"
        "print(sys.executable, os.getcwd(), torch.get_num_threads(), sep='\\n')"
    )
    session = lab.json(
        "POST",
        "api/sessions",
        {
            "path": chapter.name,
            "type": "notebook",
            "name": chapter.name,
            "kernel": {"name": "python3"},
        },
    )
    kernel = session["kernel"]["id"]
    url = f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel}/channels?token={lab.token}"
    try:
        results = IOLoop.current().run_sync(
            lambda: _run_cells(url, [probe, *code[:FIRST_CELLS]]), timeout=CELL_TIMEOUT_S
        )
    finally:
        lab.request("DELETE", f"api/sessions/{session['id']}")
    for index, (status, texts) in enumerate(results):
        assert status == "ok", f"cell {index} of the probe + {chapter.name}: {''.join(texts)}"
    executable, cwd, threads = "".join(results[0][1]).split()
    assert in_venv(executable), executable
    assert Path(cwd).resolve() == chapter.parent.resolve()
    assert threads == "1", "the kernel should run one torch thread"
