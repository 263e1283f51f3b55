"""Hostile fetches through SafeFetcher against a loopback server: memory and deadline.

- Memory: a small normal page vs a stacked-gzip bomb (``Content-Encoding: gzip, gzip``, a few KB
  that inflate to 1 GB). Each case is fetched in a fresh subprocess, which reports its peak RSS
  (``ru_maxrss``) and, in a second run, its tracemalloc peak. Goal: bomb RSS <= 1.6x the page's.
- Deadline: a server that sends its response headers one byte every 0.2 s, fetched with a
  total deadline; the time until the fetch gives up, against that deadline.

    python bench/hostile_fetch.py [--deadline 1.0] [--reference]

``--reference`` adds the bomb read the way httpx decodes by itself (``iter_bytes`` with the
same cap check), i.e. how the fetcher behaved before it decoded the raw stream itself: it
inflates the whole gigabyte, so expect >1 GB of RSS for a moment.
Writes bench/results/hostile_fetch.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.errors import FetchNetworkError  # noqa: E402
from pipeline.fetch import SafeFetcher  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "hostile_fetch.json"
BOMB_SIZE = 1024 * 1024 * 1024


def gzip_bomb() -> bytes:
    inner = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [inner.compress(block) for _ in range(BOMB_SIZE // len(block))]
    parts.append(inner.flush())
    return gzip.compress(b"".join(parts), 9)


def small_page() -> bytes:
    paragraph = b"<p>An ordinary paragraph of an ordinary article, with a few words.</p>\n"
    return b"<!doctype html><html><body>" + paragraph * 300 + b"</body></html>"


class HostileServer:
    """Raw-socket loopback server: ``/small``, ``/bomb`` and ``/drip`` (headers byte by byte)."""

    def __init__(self) -> None:
        self.bodies = {
            "/small": ({"Content-Type": "text/html; charset=utf-8"}, small_page()),
            "/bomb": ({"Content-Type": "text/html", "Content-Encoding": "gzip, gzip"}, gzip_bomb()),
        }
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.drip_closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                piece = conn.recv(4096)
                if not piece:
                    return
                request += piece
            path = request.split(b" ", 2)[1].decode()
            try:
                if path == "/drip":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Drip: ")
                    while True:
                        conn.sendall(b"a")
                        time.sleep(0.2)
                headers, body = self.bodies[path]
                head = {**headers, "Content-Length": str(len(body)), "Connection": "close"}
                lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
                conn.sendall(f"HTTP/1.1 200 OK\r\n{lines}\r\n".encode() + body)
            except OSError:
                if path == "/drip":
                    self.drip_closed.set()


# --- one fetch in a child process ----------------------------------------------------------------
def child(url: str, mode: str) -> None:
    """Fetch ``url`` once and print what it cost (run as ``--child URL MODE``)."""
    port = url.split(":")[2].split("/")[0]
    settings = Settings(fetch_allow_hosts=[f"127.0.0.1:{port}"])
    if mode == "tracemalloc":
        tracemalloc.start()
    started = time.perf_counter()
    if mode == "httpx-reference":
        size, truncated = _httpx_reference(url, settings.fetch_max_bytes)
    else:
        with SafeFetcher(settings) as fetcher:
            response = fetcher.get(url)
        size, truncated = len(response.content), response.truncated
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if mode == "tracemalloc" else None
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"bytes": size, "truncated": truncated, "seconds": elapsed,
                      "peak_rss_mb": rss_kb / 1024, "tracemalloc_peak_mb":
                      None if peak is None else peak / 2**20}))  # fmt: skip


def _httpx_reference(url: str, cap: int) -> tuple[int, bool]:
    """The old read: httpx decodes each chunk in full, the cap is checked afterwards."""
    import httpx

    body = bytearray()
    with httpx.Client(trust_env=False) as client, client.stream("GET", url) as response:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > cap:
                break
    return min(len(body), cap), len(body) > cap


def run_child(url: str, mode: str) -> dict[str, object]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", url, mode]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def baseline_rss_mb() -> float:
    """Peak RSS of a child that imports the fetcher and builds one, fetching nothing."""
    code = (
        "import resource, sys; sys.path.insert(0, '.');"
        "from pipeline.fetch import SafeFetcher; from pipeline.settings import Settings;"
        "SafeFetcher(Settings()).close();"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout  # fmt: skip
    return float(out.strip())


def drip(server: HostileServer, deadline: float) -> dict[str, object]:
    settings = Settings(fetch_allow_hosts=[f"127.0.0.1:{server.port}"],
                        fetch_total_timeout=deadline, fetch_read_timeout=60)  # fmt: skip
    started = time.perf_counter()
    error = None
    with SafeFetcher(settings) as fetcher:
        try:
            fetcher.get(server.url("/drip"))
        except FetchNetworkError as exc:
            error = str(exc)
    elapsed = time.perf_counter() - started
    return {"deadline_s": deadline, "elapsed_s": elapsed, "overshoot_s": elapsed - deadline,
            "error": error, "server_saw_close": server.drip_closed.wait(5)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("URL", "MODE"))
    parser.add_argument("--deadline", type=float, default=1.0)
    parser.add_argument("--reference", action="store_true", help="also the httpx-decoded read")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    server = HostileServer()
    bomb_wire = len(server.bodies["/bomb"][1])
    cases = {"small page": "/small", "stacked-gzip bomb": "/bomb"}
    memory: dict[str, dict[str, object]] = {}
    for name, path in cases.items():
        rss = run_child(server.url(path), "rss")
        traced = run_child(server.url(path), "tracemalloc")
        memory[name] = {**rss, "tracemalloc_peak_mb": traced["tracemalloc_peak_mb"]}
    if args.reference:
        memory["bomb, httpx-decoded (before)"] = run_child(server.url("/bomb"), "httpx-reference")
    ratio = float(memory["stacked-gzip bomb"]["peak_rss_mb"]) / float(  # type: ignore[arg-type]
        memory["small page"]["peak_rss_mb"]  # type: ignore[arg-type]
    )
    dripped = drip(server, args.deadline)
    result = {
        "baseline_rss_mb": baseline_rss_mb(),
        "bomb_wire_bytes": bomb_wire,
        "bomb_inflated_bytes": BOMB_SIZE,
        "memory": memory,
        "bomb_to_small_rss_ratio": ratio,
        "ratio_target": 1.6,
        "dripping_headers": dripped,
    }
    print(f"baseline child RSS (imports, no fetch): {result['baseline_rss_mb']:.1f} MB")
    print(f"bomb: {bomb_wire} B on the wire, {BOMB_SIZE} B inflated\n")
    print(f"{'case':32} {'peak RSS MB':>12} {'tracemalloc MB':>15} {'body B':>10} {'s':>7}")
    for name, row in memory.items():
        traced = row.get("tracemalloc_peak_mb")
        traced_text = f"{traced:.1f}" if isinstance(traced, float) else "-"
        print(f"{name:32} {row['peak_rss_mb']:>12.1f} {traced_text:>15} {row['bytes']:>10} "
              f"{row['seconds']:>7.2f}")  # fmt: skip
    print(f"\nbomb / small page peak RSS: {ratio:.2f}x (target <= 1.6x)")
    print(f"dripping headers: gave up after {dripped['elapsed_s']:.2f} s for a "
          f"{dripped['deadline_s']} s deadline (overshoot {dripped['overshoot_s']:.2f} s); "
          f"server saw the close: {dripped['server_saw_close']}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
