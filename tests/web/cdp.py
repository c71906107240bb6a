"""Just enough of the Chrome DevTools Protocol to drive headless Chromium from a test:
launch it, open pages, evaluate JavaScript, wait for a condition, take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "chromium"
START_TIMEOUT_S = 30.0


def find_chromium() -> str | None:
    """Chromium's path; as root with apt-get (CI), install Debian's package if it is missing."""
    found = shutil.which(CHROMIUM)
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", CHROMIUM]):
        if subprocess.run(command, env=env, capture_output=True, timeout=900).returncode != 0:
            return None
    return shutil.which(CHROMIUM)


def launch_flags(wav: Path, profile: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
    ]


class CdpError(RuntimeError):
    pass


class Browser:
    """A headless Chromium and one DevTools connection to it (flat sessions, one per page)."""

    def __init__(self, process: subprocess.Popen, profile: tempfile.TemporaryDirectory):
        self._process = process
        self._profile = profile
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self.console: list[str] = []
        """Console messages and uncaught exceptions of every page, for failure messages."""

    @classmethod
    async def launch(cls, executable: str, wav: Path) -> "Browser":
        # Chromium's helper processes write into the profile until they exit, so the whole
        # process group is ended on close, and a file still left there fails no test.
        profile = tempfile.TemporaryDirectory(prefix="chromium-profile-", ignore_cleanup_errors=True)
        process = subprocess.Popen(
            [executable, *launch_flags(wav, Path(profile.name)), "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        browser = cls(process, profile)
        try:
            await browser._connect(Path(profile.name) / "DevToolsActivePort")
        except BaseException:
            await browser.close()
            raise
        return browser

    async def _connect(self, port_file: Path) -> None:
        async with asyncio.timeout(START_TIMEOUT_S):
            while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
                if self._process.poll() is not None:
                    raise CdpError(f"chromium exited with {self._process.returncode}")
                await asyncio.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            data = json.loads(message.data)
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in data["params"]["args"]))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append(data["params"]["exceptionDetails"].get("exception", {}).get("description", "exception"))
        for future in self._waiting.values():
            future.set_exception(CdpError("the DevTools connection closed"))

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        assert self._ws is not None
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self._ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, START_TIMEOUT_S)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply["result"]

    async def open(self, url: str) -> "Page":
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.send("Page.navigate", {"url": url})
        await page.wait_for("document.readyState === 'complete'", 20)
        return page

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self._reader is not None:
            self._reader.cancel()
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._process.wait, 10)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        self._profile.cleanup()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self._process.pid, signum)
        except ProcessLookupError:
            pass


class Page:
    def __init__(self, browser: Browser, session: str):
        self._browser = browser
        self._session = session

    async def send(self, method: str, params: dict | None = None) -> dict:
        return await self._browser.send(method, params, self._session)

    async def evaluate(self, expression: str, *, user_gesture: bool = False) -> Any:
        """The expression's value (awaited if a promise); `user_gesture` as if a person clicked."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True, "userGesture": user_gesture},
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, poll: float = 0.25) -> Any:
        """Poll until the expression is truthy; its last value on timeout is in the error."""
        value = None
        try:
            async with asyncio.timeout(timeout):
                while not (value := await self.evaluate(expression)):
                    await asyncio.sleep(poll)
        except TimeoutError:
            raise TimeoutError(f"{expression!r} stayed {value!r}; console: {self._browser.console[-10:]}") from None
        return value

    async def screenshot(self, path: Path, width: int = 900, height: int = 640) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        data = await self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(data["data"]))
