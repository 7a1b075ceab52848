#!/usr/bin/env python3
"""Run the web example's page in a real headless Chromium (WebGPU on SwiftShader) and
check what it shows. Standard library only: the page is served over http on 127.0.0.1
and driven through chromedriver's WebDriver protocol.

    python3 scripts/web-test.py DIR [--screenshot PNG] [--timeout SECONDS]
    python3 scripts/web-test.py DIR --fault KIND --expect TEXT
    python3 scripts/web-test.py DIR --checks-only

DIR is the folder `scripts/web-build.sh` wrote (index.html, the wasm and its glue, the
fixture files the page fetches). The page writes its lines into #log and, when it has
run everything, "DONE" into #status (or "ERROR: ..." when something failed to run).
Exits 0 when the page says DONE, shows no FAIL and no panic, and every result the page
promises (each check at tp 1, 2 and 4, the generation) is there; 1 otherwise, printing
the page's log either way.

With --checks-only (a page built by `web-build.sh --checks-only`) the generation is not
expected; the page must say it is not in the build.

With --fault KIND the page runs one failure instead (index.html?fault=KIND: lost,
refused, too-large) and must end in the library's `Error`: the status says "ERROR: ...",
the log holds TEXT (the `Error` value the page logs, e.g. "DeviceLost { rank: 1"), and
nothing panics.
"""

import argparse
import base64
import functools
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request

CHROME_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--use-webgpu-adapter=swiftshader",
    "--use-angle=swiftshader",
    "--window-size=1100,640",
]

# What the page must show (one line each).
EXPECTED = [
    "column-parallel tp 1: PASS",
    "column-parallel tp 2: PASS",
    "column-parallel tp 4: PASS",
    "row-parallel tp 1: PASS",
    "row-parallel tp 2: PASS",
    "row-parallel tp 4: PASS",
    "megatron mlp tp 1: PASS",
    "megatron mlp tp 2: PASS",
    "megatron mlp tp 4: PASS",
    "generation tp 2: PASS",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"{}").get("value")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--screenshot")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--fault")
    ap.add_argument("--checks-only", action="store_true")
    ap.add_argument("--expect")
    args = ap.parse_args()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                          ".wasm": "application/wasm"}

        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=args.dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    if args.fault:
        page += f"?fault={args.fault}"

    port = free_port()
    driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    log, status = "", ""
    try:
        for _ in range(100):
            try:
                call(base, "GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": CHROME_ARGS},
        }}}
        session = call(base, "POST", "/session", caps)["sessionId"]
        s = f"/session/{session}"
        call(base, "POST", s + "/timeouts", {"script": 60000, "pageLoad": 120000})
        call(base, "POST", s + "/url", {"url": page})
        script = ("return [document.getElementById('status')?.textContent ?? '', "
                  "document.getElementById('log')?.textContent ?? ''];")
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            status, log = call(base, "POST", s + "/execute/sync", {"script": script, "args": []})
            if status == "DONE" or status.startswith("ERROR"):
                break
            time.sleep(1)
        if args.screenshot:
            png = call(base, "GET", s + "/screenshot")
            with open(args.screenshot, "wb") as f:
                f.write(base64.b64decode(png))
        call(base, "DELETE", s)
    finally:
        driver.terminate()
        server.shutdown()

    print(log)
    print(f"status: {status or '(none)'}")
    problems = []
    if "panicked" in log:
        problems.append("a panic")
    if args.fault:
        if not status.startswith("ERROR: "):
            problems.append(f"fault {args.fault}: no error shown (status {status!r})")
        if args.expect and args.expect not in log:
            problems.append(f"fault {args.fault}: the log lacks {args.expect!r}")
        for p in problems:
            print(f"web-test: {p}", file=sys.stderr)
        return 1 if problems else 0
    if status != "DONE":
        problems.append(f"the page did not finish (status {status!r})")
    if "FAIL" in log:
        problems.append("a check failed")
    expected = EXPECTED
    if args.checks_only:
        expected = [e for e in EXPECTED if not e.startswith("generation")]
        expected.append("generation: not in this build")
    problems += [f"missing: {line}" for line in expected if line not in log]
    for p in problems:
        print(f"web-test: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
