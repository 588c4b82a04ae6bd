"""lba download against a local HTTP server: record lookup, Range resume, checksum, unpacking."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading

import pytest
from conftest import ATOM3D, require_shared
from typer.testing import CliRunner

from lba_cli.cli import app
from lba_cli.download import download_atom3d_lba
from lba_cli.errors import DataError

NAME = "LBA-split-by-sequence-identity-30.tar.gz"


def make_archive() -> bytes:
    """A small archive laid out like the official one: the demo's test LMDB as 'test'."""
    require_shared()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(ATOM3D / "data" / "test" / "data.mdb", arcname="split-by-sequence-identity-30/data/test/data.mdb")
    return buffer.getvalue()


class Server:
    """Serves a Zenodo-like record and one file; can cut the first transfer short."""

    def __init__(self, payload: bytes, md5: str, cut_first_after: int | None = None) -> None:
        self.payload, self.md5, self.cut = payload, md5, cut_first_after
        self.requests: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                if self.path == "/api/records/1":
                    body = json.dumps({"files": [{"key": NAME, "size": len(outer.payload),
                                                  "checksum": f"md5:{outer.md5}",
                                                  "links": {"self": f"{outer.base}/files/{NAME}"}}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                ranged = self.headers.get("Range")
                outer.requests.append(ranged)
                start = int(ranged.split("=")[1].rstrip("-")) if ranged else 0
                body = outer.payload[start:]
                self.send_response(206 if ranged else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut is not None and len(outer.requests) == 1:
                    self.wfile.write(body[:outer.cut])  # then drop the connection
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def test_interrupted_download_resumes_verifies_and_unpacks(tmp_path):
    payload = make_archive()
    server = Server(payload, hashlib.md5(payload).hexdigest(), cut_first_after=len(payload) // 3)
    try:
        with pytest.raises(DataError, match="run the same command again to resume"):
            download_atom3d_lba("30", tmp_path, f"{server.base}/api/records/1")
        part = tmp_path / f"{NAME}.part"
        assert 0 < part.stat().st_size < len(payload)
        seen = []
        root = download_atom3d_lba("30", tmp_path, f"{server.base}/api/records/1", lambda done,
                                   total: seen.append(done))
    finally:
        server.close()
    assert server.requests == [None, f"bytes={len(payload) // 3}-"]
    assert seen[-1] == len(payload)
    assert (tmp_path / NAME).read_bytes() == payload and not part.exists()
    assert (root / "data" / "test" / "data.mdb").is_file()
    from lba_cli.data.sources.atom3d import find_atom3d_lmdbs

    assert list(find_atom3d_lmdbs(root)) == ["test"]


def test_checksum_mismatch_removes_the_partial_file(tmp_path):
    payload = make_archive()
    server = Server(payload, "0" * 32)
    try:
        with pytest.raises(DataError, match="does not match"):
            download_atom3d_lba("30", tmp_path, f"{server.base}/api/records/1")
    finally:
        server.close()
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / NAME).exists()


def test_cli_download_prints_the_root(tmp_path):
    payload = make_archive()
    server = Server(payload, hashlib.md5(payload).hexdigest())
    try:
        result = CliRunner().invoke(app, ["download", "atom3d-lba", "--split", "30", "-o", str(tmp_path),
                                          "--record-url", f"{server.base}/api/records/1"])
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "split-by-sequence-identity-30")
    bad = CliRunner().invoke(app, ["download", "atom3d-lba", "--split", "45", "-o", str(tmp_path)])
    assert bad.exit_code == 1 and "unknown split" in bad.output
