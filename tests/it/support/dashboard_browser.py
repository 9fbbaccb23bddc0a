#!/usr/bin/env python3
"""Drives a real headless Chromium through the dashboard over the DevTools protocol
(--remote-debugging-pipe; standard library only): signs in through the login form, loads every
page given, and reports per page the final URL, the title, the console errors (exceptions,
console.error, CSP violations, failed loads), the number of coverage cells, and a full-page
screenshot written to the output directory.

usage: dashboard_browser.py CHROMIUM BASE_URL TOKEN OUT_DIR PATH...
prints one JSON object on stdout.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, chromium, profile):
        cmd_r, self.cmd_w = os.pipe()
        self.resp_r, resp_w = os.pipe()

        def wire():
            a, b = os.dup(cmd_r), os.dup(resp_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-pipe",
                "--window-size=1366,900",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=wire,
        )
        os.close(cmd_r)
        os.close(resp_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def _read(self, deadline):
        while b"\0" not in self.buf:
            if time.time() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.resp_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method, timeout=30):
        deadline = time.time() + timeout
        for i, m in enumerate(self.events):
            if m.get("method") == method:
                del self.events[: i + 1]
                return m
        while True:
            m = self._read(deadline)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def drain(self, seconds):
        """Collects events arriving within `seconds` (late console messages)."""
        deadline = time.time() + seconds
        import select

        while time.time() < deadline:
            r, _, _ = select.select([self.resp_r], [], [], max(0.0, deadline - time.time()))
            if not r:
                break
            self.buf += os.read(self.resp_r, 1 << 16)
            while b"\0" in self.buf:
                msg, self.buf = self.buf.split(b"\0", 1)
                self.events.append(json.loads(msg))

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def errors_of(events):
    out = []
    for m in events:
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + json.dumps(p.get("args", []))[:500])
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            out.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}")
    return out


def evaluate(b, expr):
    r = b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True})
    return r.get("result", {}).get("value")


def navigate(b, url):
    b.send("Page.navigate", {"url": url})
    b.wait_event("Page.loadEventFired")


def main():
    chromium, base, token, out_dir, *paths = sys.argv[1:]
    os.makedirs(out_dir, exist_ok=True)
    report = {"login": {}, "pages": []}
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(chromium, profile)
        try:
            target = b.send("Target.createTarget", {"url": "about:blank"}, session=False)
            b.session = b.send(
                "Target.attachToTarget",
                {"targetId": target["targetId"], "flatten": True},
                session=False,
            )["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                b.send(f"{domain}.enable")
            # Signing in: the dashboard sends the browser to the form, which brings it back.
            b.events.clear()
            navigate(b, base + "/ui/coverage")
            report["login"]["redirected_to"] = evaluate(b, "location.pathname + location.search")
            evaluate(
                b,
                "document.getElementById('token').value = " + json.dumps(token)
                + "; document.querySelector('form.login').submit(); true",
            )
            b.wait_event("Page.loadEventFired")
            report["login"]["landed_on"] = evaluate(b, "location.pathname")
            report["login"]["cookie_visible_to_scripts"] = evaluate(b, "document.cookie")
            b.drain(0.3)
            report["login"]["errors"] = errors_of(b.events)
            for path in paths:
                b.events.clear()
                navigate(b, base + path)
                b.drain(0.3)
                name = path.strip("/").replace("/", "-") or "overview"
                metrics = b.send("Page.getLayoutMetrics")
                size = metrics.get("cssContentSize") or metrics.get("contentSize")
                shot = b.send(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {
                            "x": 0,
                            "y": 0,
                            "width": max(1, min(size["width"], 2400)),
                            "height": max(1, min(size["height"], 6000)),
                            "scale": 1,
                        },
                    },
                )
                file = os.path.join(out_dir, name + ".png")
                with open(file, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                report["pages"].append(
                    {
                        "path": path,
                        "location": evaluate(b, "location.pathname"),
                        "title": evaluate(b, "document.title"),
                        "h1": evaluate(b, "document.querySelector('h1') && document.querySelector('h1').textContent"),
                        "coverage_cells": evaluate(
                            b, "document.querySelectorAll('#coverage-map rect.cell').length"
                        ),
                        "svgs_without_name": evaluate(
                            b,
                            "[...document.querySelectorAll('svg[role=img]')].filter(s => !s.getAttribute('aria-label') || !s.querySelector('title')).length",
                        ),
                        "errors": errors_of(b.events),
                        "screenshot": file,
                        "screenshot_bytes": os.path.getsize(file),
                    }
                )
        finally:
            b.close()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
