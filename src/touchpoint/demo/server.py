"""The demo's server: the app on a uvicorn thread, and waiting for the stream processor.

`touchpoint demo` runs the real HTTP app in its own process (on a background
thread, so the demo can send events to it over HTTP and then keep serving).
"""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING

import httpx

from touchpoint.config.settings import Settings
from touchpoint.core.errors import TouchpointError

if TYPE_CHECKING:
    from touchpoint.runtime import Workspace


class DemoError(TouchpointError):
    """The demo could not start its server or the processor never caught up."""

    code = "demo_failed"
    status = 500


class BackgroundServer:
    """A uvicorn server on its own thread, started and stopped by the caller: the app with
    the demo's storefront page (`demo.page`)."""

    def __init__(self, settings: Settings, *, host: str, port: int) -> None:
        import uvicorn

        from touchpoint.api.app import create_app
        from touchpoint.demo.page import router

        self.app = create_app(settings, routers=[router])
        config = uvicorn.Config(self.app, host=host, port=port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.base_url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.run, name="demo-server", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        """Start serving and return once `/healthz` answers; DemoError if it never does."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise DemoError(f"the server stopped while starting (is {self.base_url} in use?)")
            if self.server.started:
                try:
                    if httpx.get(f"{self.base_url}/healthz", timeout=2.0).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise DemoError(f"the server did not answer {self.base_url}/healthz in {timeout:.0f} s")

    @property
    def workspace(self) -> Workspace:
        """The workspace the server opened (once started)."""
        opened: Workspace = self.app.state.workspace
        return opened

    def stop(self) -> None:
        """Ask uvicorn to shut down (lifespan closes the workspace) and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=20)

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C or SIGTERM stops it cleanly."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: setattr(self.server, "should_exit", True))
        try:
            while self.thread.is_alive():
                self.thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()


def wait_for_processor(base_url: str, *, timeout: float = 120.0) -> float:
    """Poll `/healthz` until the processor's lag is 0; the seconds it took. DemoError if never."""
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        while time.monotonic() - started < timeout:
            health = client.get("/healthz").json()
            if health.get("lag") == 0:
                return time.monotonic() - started
            if health.get("processor") == "stopped":
                raise DemoError("the stream processor is not running")
            time.sleep(0.1)
    raise DemoError(f"the processor had not caught up after {timeout:.0f} s")
