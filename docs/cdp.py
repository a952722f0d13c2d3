"""A few Chrome DevTools Protocol calls to headless Chromium (over aiohttp's websocket
client): open a page, run JavaScript in it, take a screenshot. For docs/ui_shots.py."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Headless Chromium with a fresh profile, driven on a loopback debugging port."""

    def __init__(self, chromium: str, width: int, height: int) -> None:
        self.profile = tempfile.mkdtemp(prefix="nrfer-chromium-")
        self.port = free_port()
        self.width, self.height = width, height
        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                f"--remote-debugging-port={self.port}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/json/list", timeout=2
                ) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    self.ws_url = pages[0]["webSocketDebuggerUrl"]
                    break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"{chromium} did not open its debugging port")
            time.sleep(0.3)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def run(self, steps) -> list:
        """Run `steps` (a list of ("goto", url) / ("js", expr) / ("wait", s) / ("drag", expr
        giving [x1, y1, x2, y2]) / ("shot", path)) on the page; returns the results of the
        "js" and "drag" steps."""
        return asyncio.run(self._run(steps))

    async def _run(self, steps) -> list:
        import aiohttp

        ids = itertools.count(1)
        out = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(self.ws_url, max_msg_size=0) as ws:

                async def call(method: str, **params):
                    n = next(ids)
                    await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
                    while True:
                        msg = json.loads((await ws.receive()).data)
                        if msg.get("id") == n:
                            if "error" in msg:
                                raise RuntimeError(f"{method}: {msg['error']}")
                            return msg.get("result", {})

                await call(
                    "Emulation.setDeviceMetricsOverride",
                    width=self.width,
                    height=self.height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                for kind, arg in steps:
                    if kind == "goto":
                        await call("Page.navigate", url=arg)
                    elif kind == "wait":
                        await asyncio.sleep(arg)
                    elif kind == "js":
                        r = await call(
                            "Runtime.evaluate",
                            expression=arg,
                            returnByValue=True,
                            awaitPromise=True,
                        )
                        out.append(r.get("result", {}).get("value"))
                    elif kind == "drag":  # arg: JS giving [x1, y1, x2, y2] (a mouse drag)
                        r = await call("Runtime.evaluate", expression=arg, returnByValue=True)
                        pos = r.get("result", {}).get("value")
                        if pos:
                            x1, y1, x2, y2 = pos
                            for typ, x, y in (
                                ("mousePressed", x1, y1),
                                ("mouseMoved", (x1 + x2) / 2, y1),
                                ("mouseMoved", x2, y2),
                                ("mouseReleased", x2, y2),
                            ):
                                await call(
                                    "Input.dispatchMouseEvent",
                                    type=typ,
                                    x=x,
                                    y=y,
                                    button="left",
                                    buttons=0 if typ == "mouseReleased" else 1,
                                    clickCount=1,
                                )
                        out.append(pos)
                    elif kind == "shot":
                        r = await call("Page.captureScreenshot", format="png")
                        Path(arg).write_bytes(base64.b64decode(r["data"]))
        return out
