"""Fixtures of the real-browser tests: headless Chromium (Debian's ``chromium``) driven by Playwright, and a
JupyterLab server on loopback.

* ``chromium_path`` — ``$MPLMM_CHROMIUM``, ``/usr/bin/chromium`` or ``chromium``/``chromium-browser`` on ``PATH``;
* ``browser`` — a Playwright browser context on a fresh profile (``launch_persistent_context`` on a temporary
  ``--user-data-dir``), never a downloaded browser;
* ``lab_server`` — ``jupyter lab`` on ``127.0.0.1`` (free port, random token, root dir = the repository, fresh
  settings/workspace folders, autosave off so running the notebooks never rewrites them), started in its own
  process group and stopped by its own pid (kernels shut down over the REST API, then terminate → wait → kill);
* ``output_dir`` — ``tests/browser/_output/`` for screenshots (ignored by git through its own ``.gitignore``).

Without Chromium or the ``playwright`` package the tests SKIP, so ``make test`` passes on machines without a
browser; with ``MPLMM_REQUIRE_BROWSER=1`` (``make test-browser``) they FAIL instead, naming what is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = Path(__file__).resolve().parent / "_output"
REQUIRE_BROWSER = os.environ.get("MPLMM_REQUIRE_BROWSER", "").strip().lower() in ("1", "true", "yes")

# --headless=new with every background service off: without them Chromium opens connections of its own (updates,
# sync, safe browsing) that the sandbox of CI refuses many at a time.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]
VIEWPORT = {"width": 1400, "height": 1000}
SERVER_START_TIMEOUT = 120.0  # seconds until JupyterLab answers /api/status (a cold start on 2 busy cores)


def unavailable(reason: str) -> None:
    """Skip (default) or fail (``MPLMM_REQUIRE_BROWSER=1``) because the browser tool chain is missing."""
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} [MPLMM_REQUIRE_BROWSER=1: the browser tests must run]", pytrace=False)
    pytest.skip(f"{reason} (set MPLMM_REQUIRE_BROWSER=1 to make this an error)")


def find_chromium() -> Optional[str]:
    """Path of a Chromium executable, or None: ``$MPLMM_CHROMIUM``, ``/usr/bin/chromium``, then ``PATH``."""
    env = os.environ.get("MPLMM_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------------------------------------------------
# output folder
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def output_dir() -> Path:
    """``tests/browser/_output/`` (created, with a ``.gitignore`` of ``*`` so its screenshots are never committed);
    the screenshots and notes of an earlier session are removed first, so the folder shows this run only."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT_DIR.iterdir():
        if old.is_file() and old.suffix in (".png", ".json", ".txt"):
            old.unlink()
    ignore = OUTPUT_DIR / ".gitignore"
    if not ignore.is_file():
        ignore.write_text("# screenshots of tests/browser (regenerated on every run)\n*\n")
    return OUTPUT_DIR


# ----------------------------------------------------------------------------------------------------------------------
# browser
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        unavailable("no Chromium executable: expected /usr/bin/chromium (Debian package `chromium`; run "
                    "`bash scripts/ensure_chromium.sh`) or a path in $MPLMM_CHROMIUM")
    return path


@pytest.fixture(scope="session")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the Python package `playwright` is not installed (`pip install -e '.[browser]'` or "
                    "`pip install playwright`; no browser download is needed: the tests use the system Chromium)")
    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="session")
def browser(playwright_api, chromium_path, tmp_path_factory):
    """A browser context on a fresh ``--user-data-dir`` (one Chromium process for the whole session)."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    try:
        context = playwright_api.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT,
            device_scale_factor=1, timeout=60_000)
    except Exception as exc:  # noqa: BLE001 - a broken install must say so, in both modes
        pytest.fail(f"Chromium at {chromium_path} did not start under Playwright: {exc}", pytrace=False)
    context.set_default_timeout(60_000)
    yield context
    context.close()


# ----------------------------------------------------------------------------------------------------------------------
# JupyterLab
# ----------------------------------------------------------------------------------------------------------------------
# User settings of the test server only (a temporary JUPYTERLAB_SETTINGS_DIR): never autosave (running the notebooks
# must not write their outputs into the tracked files), no news / update pop-ups, every cell attached to the DOM.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@dataclass
class LabServer:
    """A running ``jupyter lab`` process (see the ``lab_server`` fixture)."""

    proc: subprocess.Popen
    port: int
    token: str
    root_dir: Path
    log_path: Path
    started_s: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 10.0):
        req = urllib.request.Request(self.base + "api/" + path.lstrip("/"), method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def shutdown_kernels(self) -> None:
        try:
            for kernel in self.api("kernels") or []:
                self.api(f"kernels/{kernel['id']}", method="DELETE", timeout=30.0)
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def stop(self) -> None:
        """Shut its kernels down, then terminate → wait → kill the server by its own pid."""
        if self.proc.poll() is None:
            self.shutdown_kernels()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)


def _lab_command(port: int, token: str, root_dir: Path, runtime: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.open_browser=False",
        "--ServerApp.allow_remote_access=False",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells through JupyterLab's own commands
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",
        f"--LabServerApp.user_settings_dir={runtime / 'settings'}",
        f"--LabServerApp.workspaces_dir={runtime / 'workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root
        cmd.append("--allow-root")
    return cmd


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory) -> LabServer:
    """JupyterLab on 127.0.0.1:<free port> with a random token, serving the repository; stopped by its pid."""
    import secrets

    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        pytest.fail("jupyterlab is not installed in this interpreter (pip install -e '.[notebooks]')",
                    pytrace=False)
    from mplmm.workbench.batch import ensure_kernel

    ensure_kernel()  # the notebooks ask for the `mplmm` kernel
    runtime = tmp_path_factory.mktemp("jupyterlab")
    for rel, values in LAB_SETTINGS.items():
        target = runtime / "settings" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    (runtime / "workspaces").mkdir(exist_ok=True)
    (runtime / "runtime").mkdir(exist_ok=True)
    token = secrets.token_hex(24)
    env = dict(os.environ)
    env.update({
        "JUPYTER_RUNTIME_DIR": str(runtime / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(runtime / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(runtime / "workspaces"),
        "PYTHONHASHSEED": "0",
        "TQDM_DISABLE": "1",
    })
    env.setdefault("OMP_NUM_THREADS", "2")
    env.setdefault("MKL_NUM_THREADS", "2")
    log_path = runtime / "jupyterlab.log"
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between bind() and the server's own bind()
        port = free_port()
        log = open(log_path, "ab")  # noqa: SIM115 - closed below, the server writes to it
        t0 = time.time()
        proc = subprocess.Popen(_lab_command(port, token, ROOT, runtime), cwd=str(ROOT), env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        server = LabServer(proc=proc, port=port, token=token, root_dir=ROOT, log_path=log_path)
        while time.time() - t0 < SERVER_START_TIMEOUT:
            if proc.poll() is not None:
                last_error = f"jupyter lab exited with code {proc.returncode}:\n{server.log_tail()}"
                break
            try:
                server.api("status", timeout=5.0)
                server.started_s = time.time() - t0
                break
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.5)
        else:
            server.stop()
            pytest.fail(f"jupyter lab did not answer on port {port} within {SERVER_START_TIMEOUT:.0f} s:\n"
                        f"{server.log_tail()}", pytrace=False)
        if server.started_s:
            break
    else:
        pytest.fail(f"could not start jupyter lab: {last_error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        if server.proc.returncode is None:
            raise RuntimeError(f"jupyter lab (pid {server.proc.pid}) is still running")
