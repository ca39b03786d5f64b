"""The test suite's own HTTP proxy, put between thumbfs and s3rver: it
records every request (method, path, headers) and can inject the faults
real S3 shows (an error status for a while, a connection dropped
mid-body, a stall past the client's timeout)."""
import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Proxy:
    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.requests = []  # (method, path, {header: value}), in order
        # (start, end (time.time()), method, path, what happened), as each
        # ends
        self.done = []
        self.lock = threading.Lock()
        self.faults = []  # callables(method, path, headers) -> fault
        self.aliases = {}  # access key id -> the one upstream knows
        # an encrypting store: PUT and POST answers say they applied this
        # server-side encryption (s3rver says none, as a store without a
        # key service does)
        self.encrypt = None
        self.encrypt_kms = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def held(self, seconds):
                """Hold the request this long; False if its client went
                away meanwhile (timed out, or killed): then it is not
                forwarded at all, as nginx drops a request whose client
                closed before it was sent on."""
                import select
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    r, _, _ = select.select([self.connection], [], [], 0.1)
                    if r:
                        try:
                            if self.connection.recv(
                                    1, socket.MSG_PEEK) == b"":
                                self.close_connection = True
                                return False
                        except OSError:
                            self.close_connection = True
                            return False
                return True

            def handle_one(self):
                outcome, start = ["gone"], time.time()
                try:
                    self.handle_faults(outcome)
                finally:
                    with proxy.lock:
                        proxy.done.append((start, time.time(),
                                           self.command, self.path,
                                           outcome[0]))

            def handle_faults(self, outcome):
                n = int(self.headers.get("Content-Length") or 0)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, headers))
                    fault = None
                    for f in proxy.faults:
                        fault = f(self.command, self.path, headers)
                        if fault:
                            break
                if fault:
                    outcome[0] = fault[0]
                if fault and fault[0] == "drop":
                    self.rfile.read(n // 2)  # half the body, then gone
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                body = self.rfile.read(n) if n else b""
                if fault and fault[0] == "corrupt" and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                if fault and fault[0] == "status":
                    status, code = fault[1], fault[2]
                    outcome[0] = f"injected {status}"
                    msg = fault[3] if len(fault) > 3 else "injected"
                    xml = (f"<?xml version=\"1.0\"?><Error><Code>{code}</Code>"
                           f"<Message>{msg}</Message></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                if fault and fault[0] == "stall" and \
                        not self.held(fault[1]):
                    return
                if fault and fault[0] == "trickle":
                    # an answer that never ends: a byte of its body each
                    # half second (more than curl's low-speed limit asks)
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: "
                                     b"1000000\r\n\r\n")
                    self.wfile.flush()
                    try:
                        for _ in range(int(fault[1] * 2)):
                            threading.Event().wait(0.5)
                            self.wfile.write(b" ")
                            self.wfile.flush()
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream,
                                                  timeout=60)
                fwd = dict(self.headers.items())
                for new, known in proxy.aliases.items():
                    for k in fwd:
                        if k.lower() == "authorization":
                            fwd[k] = fwd[k].replace(f"Credential={new}/",
                                                    f"Credential={known}/")
                try:
                    conn.request(self.command, self.path, body=body,
                                 headers=fwd)
                    res = conn.getresponse()
                    data = res.read()
                    outcome[0] = f"{fault[0]}, {res.status}" if fault \
                        else str(res.status)
                finally:
                    conn.close()
                self.send_response(res.status)
                for k, v in res.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection",
                                         "content-length"):
                        self.send_header(k, v)
                if proxy.encrypt and self.command in ("PUT", "POST") and \
                        200 <= res.status < 300:
                    self.send_header("x-amz-server-side-encryption",
                                     proxy.encrypt)
                    if proxy.encrypt_kms:
                        self.send_header(
                            "x-amz-server-side-encryption-aws-kms-key-id",
                            proxy.encrypt_kms)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def _next(self, count, method, fault, match=""):
        """fault for the next count requests of method whose path (with
        its query) contains match."""
        left = [count]

        def f(m, path, headers):
            if m == method and match in path and left[0] > 0:
                left[0] -= 1
                return fault
            return None
        self.faults.append(f)

    def fail(self, count, status=503, code="SlowDown", method="PUT",
             match=""):
        """Answer the next count requests of method with status/code."""
        self._next(count, method, ("status", status, code), match)

    def drop(self, count, method="PUT", match=""):
        """Drop the connection of the next count requests mid-body."""
        self._next(count, method, ("drop",), match)

    def stall(self, count, seconds, method="PUT", match=""):
        """Hold the next count requests of method this long, silent."""
        self._next(count, method, ("stall", seconds), match)

    def trickle(self, count, seconds, method="PUT", match=""):
        """Answer the next count requests of method with a body that
        comes a byte each half second, for this long."""
        self._next(count, method, ("trickle", seconds), match)

    def corrupt(self, count, method="PUT"):
        """Flip a byte of the body of the next count requests on the way
        (what a bad NIC or middlebox does), keeping the headers."""
        self._next(count, method, ("corrupt",))

    def deny_key(self, key_id):
        """Answer 403 InvalidAccessKeyId to requests signed by key_id, as
        S3 does for revoked credentials."""
        def f(m, path, headers):
            if f"Credential={key_id}/" in headers.get("authorization", ""):
                return ("status", 403, "InvalidAccessKeyId")
            return None
        self.faults.append(f)

    def alias_key(self, new, known):
        """Forward requests signed by key id new as if by known (s3rver
        knows one account; it does not check signatures)."""
        self.aliases[new] = known

    def seen(self, method=None):
        with self.lock:
            return [r for r in self.requests
                    if method is None or r[0] == method]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
