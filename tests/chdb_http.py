"""An HTTP front for chDB: ClickHouse's HTTP interface, as far as clickhouse-connect uses
it, answered by the ClickHouse engine inside chDB. No ClickHouse server can run on this
machine (``../shared/recipes/clickhouse-server.md``), so this is how the ``http://`` DSN
path -- clickhouse-connect's HTTP transport, its compression, URL settings and query
parameters, Native results and inserts, HTTP errors -- is run against a real engine: every
statement is executed by chDB as it arrives, nothing is answered from a script.

What it is not: a server. One chDB connection, one statement at a time (a lock), no
sessions, no users beyond the one given, no cluster. What it translates: the request's
``query`` parameter plus body (ClickHouse appends the body to the query), ``param_*`` (query
parameters; in the URL or as multipart form fields, as clickhouse-connect sends them),
``database``, other URL parameters that are settings (applied to that statement only),
insert data (``INSERT ... FORMAT f`` then the data: written to a file and inserted ``FROM
INFILE``, as clickhouse-connect's own chDB backend does), request compression
(lz4, zstd, gzip; responses go uncompressed), Basic and ``X-ClickHouse-User``/``-Key``
login.

``python -m tests.chdb_http PORT DATA_DIR USER PASSWORD`` serves until killed."""

from __future__ import annotations

import base64
import email
import email.policy
import gzip
import json
import os
import re
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb
import lz4.frame

# URL parameters of the HTTP interface that are not settings of the statement.
TRANSPORT = {
    "query",
    "database",
    "session_id",
    "session_timeout",
    "session_check",
    "query_id",
    "compress",
    "decompress",
    "default_format",
    "user",
    "password",
    "quota_key",
    "enable_http_compression",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "wait_end_of_query",
    "buffer_size",
    "http_response_buffer_size",
    "cancel_http_readonly_queries_on_client_close",
    "client_protocol_version",
}
_INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<head>.*?)\s+FORMAT\s+(?P<fmt>\w+)[ \t]*\r?\n?", re.I | re.S
)
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)
_CODE = re.compile(r"Code: (\d+)")


class Engine:
    """The chDB connection and its lock."""

    def __init__(self, path: str) -> None:
        self.conn = chdb.connect(path)
        self.lock = threading.Lock()

    def run(
        self,
        sql: str,
        fmt: str,
        params: dict[str, str],
        database: str | None,
        settings: dict[str, str],
    ) -> bytes:
        """One statement (after ``USE database``, with ``settings`` for it alone) in
        ``fmt``; its output bytes."""
        with self.lock:
            if database:
                self.conn.query(f"USE `{database}`", "TabSeparated")
            for name, value in settings.items():
                self.conn.query(f"SET {name} = {_literal(value)}", "TabSeparated")
            try:
                result = self.conn.query(sql, fmt, params=params)
            finally:
                for name in settings:
                    self.conn.query(f"SET {name} = DEFAULT", "TabSeparated")
        return bytes(result.bytes())


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "lz4":  # one frame per block clickhouse-connect sends: all of them
        out, rest = [], body
        while rest:
            decompressor = lz4.frame.LZ4FrameDecompressor()
            out.append(decompressor.decompress(rest))
            rest = decompressor.unused_data
        return b"".join(out)
    if encoding == "zstd":
        from backports import zstd  # clickhouse-connect's own zstd  # type: ignore[attr-defined]

        return bytes(zstd.decompress(body))
    if encoding == "gzip":
        return gzip.decompress(body)
    return body


def _literal(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def handler(engine: Engine, user: str, password: str) -> type[BaseHTTPRequestHandler]:
    """The request handler over ``engine``, accepting ``user``/``password`` only."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            if urlsplit(self.path).path.rstrip("/") == "/ping":
                self._send(200, b"Ok.\n", {})
                return
            self._handle(b"")

        def do_POST(self) -> None:
            if "chunked" in self.headers.get("Transfer-Encoding", ""):
                body = self._chunks()
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            self._handle(_decompress(body, self.headers.get("Content-Encoding", "")))

        def _chunks(self) -> bytes:
            """A chunked request body (an insert streamed by clickhouse-connect)."""
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk

        def _login(self, params: dict[str, str]) -> tuple[str, str]:
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                name, _, key = base64.b64decode(auth[6:]).decode().partition(":")
                return name, key
            return (
                self.headers.get("X-ClickHouse-User") or params.get("user", "default"),
                self.headers.get("X-ClickHouse-Key") or params.get("password", ""),
            )

        def _handle(self, body: bytes) -> None:
            params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            kind = self.headers.get("Content-Type", "")
            if kind.startswith("multipart/form-data"):  # the query and its parameters as fields
                form = email.message_from_bytes(
                    f"Content-Type: {kind}\r\n\r\n".encode() + body, policy=email.policy.HTTP
                )
                for part in form.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    payload = part.get_payload(decode=True)
                    if isinstance(name, str) and isinstance(payload, bytes):
                        params[name] = payload.decode()
                body = b""
            if self._login(params) != (user, password):
                message = (
                    "Code: 516. DB::Exception: "
                    f"{self._login(params)[0]}: Authentication failed: password is incorrect, "
                    "or there is no user with such name. (AUTHENTICATION_FAILED)\n"
                )
                self._send(401, message.encode(), {"X-ClickHouse-Exception-Code": "516"})
                return
            query = params.get("query", "")
            binding = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
            settings = {
                k: v for k, v in params.items() if k not in TRANSPORT and not k.startswith("param_")
            }
            database = params.get("database") or None
            fmt = params.get("default_format", "TabSeparated")
            try:
                out, fmt = self._execute(query, body, binding, settings, database, fmt)
            except Exception as exc:  # the engine's error, as the server sends it
                text = str(exc)
                code = _CODE.search(text)
                self._send(
                    500,
                    (text if text.endswith("\n") else text + "\n").encode(),
                    {"X-ClickHouse-Exception-Code": code.group(1) if code else "1001"},
                )
                return
            headers = {
                "X-ClickHouse-Format": fmt,
                "X-ClickHouse-Timezone": "UTC",
                "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
                "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "written_rows": "0"}),
            }
            self._send(200, out, headers)

        def _execute(
            self,
            query: str,
            body: bytes,
            binding: dict[str, str],
            settings: dict[str, str],
            database: str | None,
            fmt: str,
        ) -> tuple[bytes, str]:
            if query:
                text, data = query, body
                insert = _INSERT.match(query)
                if not insert:  # the body continues the query (ClickHouse's rule)
                    text, data = query + ("\n" + body.decode() if body else ""), b""
            else:
                insert = _INSERT.match(body.decode("latin-1"))
                if insert:
                    text, data = insert.group(0), body[insert.end() :]
                else:
                    text, data = body.decode(), b""
            insert = _INSERT.match(text)
            if insert:
                return self._insert(insert, data, settings, database), fmt
            match = _FORMAT.search(text)
            fmt = match.group(1) if match else fmt
            sql = _FORMAT.sub("", text) if match else text
            return engine.run(sql, fmt, binding, database, settings), fmt

        def _insert(
            self, insert: re.Match[str], data: bytes, settings: dict[str, str], database: str | None
        ) -> bytes:
            fd, path = tempfile.mkstemp(suffix=".data")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                sql = f"INSERT INTO {insert.group('head')} FROM INFILE '{path}'"
                engine.run(
                    f"{sql} FORMAT {insert.group('fmt')}", "TabSeparated", {}, database, settings
                )
            finally:
                os.unlink(path)
            return b""

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve(port: int, path: str, user: str, password: str) -> None:
    """Serve on 127.0.0.1:``port`` until killed."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(Engine(path), user, password))
    print(f"chdb_http listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
