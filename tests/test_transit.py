"""Patient data in transit and at rest in the store: server-side
encryption headers sent and signed (checked on the suite's own proxy in
front of s3rver), and faults of the store survived with nothing lost."""
import os
import shutil
import socket
import subprocess

import pytest

from conftest import Mount, free_port, photos, proxied_mount, wait_for

PREFIX = "patients/filemaker-import/images/P1/2025-11-10/"






def signed_headers(headers):
    auth = headers["authorization"]
    return auth.split("SignedHeaders=")[1].split(",")[0].split(";")


@pytest.mark.parametrize("sse", ["AES256", "aws:kms"])
def test_sse_headers_sent_and_signed(thumbfs_bin, tmp_path, s3server, proxy,
                                     sse):
    kms = "arn:aws:kms:us-east-1:111122223333:key/abcd-1234"
    store = {"sse": sse}
    if sse == "aws:kms":
        store["sse_kms_key_id"] = kms
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy, **store)
    proxy.encrypt = sse
    if sse == "aws:kms":  # S3 answers the key's ARN
        proxy.encrypt_kms = kms
    m.start()
    try:
        d = m.batch()
        shutil.copy(photos()[0], d / "a.jpg")
        m.wait_uploaded("a.jpg")
    finally:
        m.stop()
    puts = {path.split("/", 2)[2]: h for _, path, h in proxy.seen("PUT")}
    # the mount's probe, at start, that the store encrypts; then deleted
    probes = [k for k in puts if k.startswith("thumbfs-probe/")]
    assert len(probes) == 1
    assert [p.split("/", 2)[2] for _, p, _ in proxy.seen("DELETE")] == probes
    assert sorted(k for k in puts if k not in probes) == [
        PREFIX + "a.jpg", PREFIX + "a_thumb.jpg"]
    for h in puts.values():
        assert h["x-amz-server-side-encryption"] == sse
        assert "x-amz-server-side-encryption" in signed_headers(h)
        if sse == "aws:kms":
            name = "x-amz-server-side-encryption-aws-kms-key-id"
            assert h[name] == kms
            assert name in signed_headers(h)
        else:
            assert "x-amz-server-side-encryption-aws-kms-key-id" not in h
    # reads and the bucket check carry none
    for method in ("HEAD", "GET"):
        for _, _, h in proxy.seen(method):
            assert "x-amz-server-side-encryption" not in h


def test_a_store_that_does_not_encrypt_is_refused(thumbfs_bin, tmp_path,
                                                  s3server, proxy):
    """sse = AES256 on a store that stores plaintext (its answers say no
    encryption): the mount refuses to start, saying so on the terminal,
    before any image is written; and a store that stops encrypting once
    mounted has what it stored deleted, the image held with the reason
    (user.thumbfs.error), nothing recorded as stored."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy, sse="AES256")
    m.start(check=False)
    assert m.proc.wait(30) != 0
    m.proc = None
    m.logf.close()
    assert "store did not encrypt" in m.log_text()
    assert not [k for k in s3server.keys(m.bucket)]
    proxy.encrypt = "AES256"
    m.start()
    try:
        d = m.batch()
        proxy.encrypt = None  # the store stops encrypting
        shutil.copy(photos()[0], d / "a.jpg")
        wait_for(lambda: os.getxattr(d / "a.jpg", "user.thumbfs.state") ==
                 b"failed", 30, "the image to be held")
        assert b"store did not encrypt" in os.getxattr(
            d / "a.jpg", "user.thumbfs.error")
        assert m.rows()[0]["state"] == "spooled"
        wait_for(lambda: s3server.keys(m.bucket) == [], 10,
                 "the plaintext object to go")
        assert "failed for good: store did not encrypt" in m.log_text()
        assert "failed for good" in (m.mnt / ".thumbfs/status").read_text()
    finally:
        m.stop()


def test_kms_with_another_key_is_refused(thumbfs_bin, tmp_path, s3server,
                                         proxy):
    """sse = aws:kms with a key id: a store that answers another KMS key
    (or none) has not encrypted as asked, and the mount refuses to start."""
    m = proxied_mount(thumbfs_bin, tmp_path, s3server, proxy, sse="aws:kms",
                      sse_kms_key_id="key/abcd-1234")
    proxy.encrypt = "aws:kms"
    proxy.encrypt_kms = "arn:aws:kms:us-east-1:1:key/other-5678"
    m.start(check=False)
    assert m.proc.wait(30) != 0
    m.proc = None
    m.logf.close()
    assert "with the KMS key key/abcd-1234" in m.log_text()


def test_bad_sse_stops_the_mount(thumbfs_bin, tmp_path, s3server):
    m = Mount(thumbfs_bin, tmp_path, "s3", s3server)
    m.config["store"]["sse"] = "rot13"
    m.start(check=False)
    assert m.proc.wait(30) != 0
    m.proc = None
    m.logf.close()
    assert "AES256 or aws:kms" in m.log_text()


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-subj", f"/CN=thumbfs test {name}", cwd=d)


class Stunnel:
    """s3rver behind stunnel on loopback, with a certificate for localhost
    and 127.0.0.1 signed by a CA the test makes (ca.pem), and one signed by
    another (wrong.pem) to stand in for an impostor."""

    def __init__(self, d, upstream):
        self.d = d
        self.upstream = upstream
        make_ca(d, "ca")
        make_ca(d, "wrong")
        (d / "san.ext").write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for ca, name in (("ca", "srv"), ("wrong", "impostor")):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    f"{name}.key", "-out", f"{name}.csr", "-subj",
                    "/CN=localhost", cwd=d)
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem",
                    "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
                    "-out", f"{name}.pem", "-extfile", "san.ext", cwd=d)
        self.port = free_port()
        self.endpoint = f"https://localhost:{self.port}"
        self.ca = d / "ca.pem"
        self.wrong = d / "wrong.pem"
        self.proc = None
        self.start("srv")

    def start(self, cert):
        conf = self.d / "stunnel.conf"
        conf.write_text(
            f"foreground = yes\npid =\n[s3]\naccept = 127.0.0.1:{self.port}\n"
            f"connect = 127.0.0.1:{self.upstream}\n"
            f"cert = {self.d}/{cert}.pem\nkey = {self.d}/{cert}.key\n")
        self.log = open(self.d / "stunnel.log", "ab")
        self.proc = subprocess.Popen(["stunnel4", str(conf)],
                                     stdout=self.log, stderr=self.log)
        wait_for(lambda: _connects(self.port), 15, "stunnel")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
        wait_for(lambda: not _connects(self.port), 15, "stunnel to stop")


@pytest.fixture
def tls_s3(s3server, tmp_path):
    if not shutil.which("stunnel4"):
        pytest.skip("stunnel4 is not installed")
    d = tmp_path / "tls"
    d.mkdir()
    t = Stunnel(d, s3server.port)
    yield t
    t.stop()


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def tls_mount(thumbfs_bin, tmp_path, s3server, ep, **store):
    m = Mount(thumbfs_bin, tmp_path, "s3", s3server)
    m.config["store"].update({"endpoint": ep, **store})
    return m


def test_tls_right_ca_uploads(thumbfs_bin, tmp_path, s3server, tls_s3):
    m = tls_mount(thumbfs_bin, tmp_path, s3server, tls_s3.endpoint,
                  ca_file=str(tls_s3.ca)).start()
    try:
        shutil.copy(photos()[0], m.batch() / "a.jpg")
        m.wait_uploaded("a.jpg")
        assert m.object_keys(PREFIX) == [PREFIX + "a.jpg",
                                         PREFIX + "a_thumb.jpg"]
        assert "insecure" not in m.log_text()
    finally:
        m.stop()


def test_tls_wrong_ca_refused_at_mount(thumbfs_bin, tmp_path, s3server,
                                      tls_s3):
    m = tls_mount(thumbfs_bin, tmp_path, s3server, tls_s3.endpoint,
                  ca_file=str(tls_s3.wrong))
    m.start(check=False)
    assert m.proc.wait(30) != 0
    m.proc = None
    m.logf.close()
    assert "unable to get local issuer certificate" in m.log_text()


def test_tls_impostor_job_waits_and_loses_nothing(thumbfs_bin, tmp_path,
                                                  s3server, tls_s3):
    """The server's certificate changes to one the configured CA did not
    sign: uploads fail with a clear error and wait; when the right server
    is back they complete, with no remount."""
    m = tls_mount(thumbfs_bin, tmp_path, s3server, tls_s3.endpoint,
                  ca_file=str(tls_s3.ca)).start()
    try:
        tls_s3.stop()
        tls_s3.start("impostor")
        data = photos()[1].read_bytes()
        (m.batch() / "b.jpg").write_bytes(data)
        wait_for(lambda: "unable to get local issuer certificate" in
                 m.log_text(), 30, "the certificate error")
        status = (m.mnt / ".thumbfs/status").read_text()
        assert "certificate" in status, status
        assert m.rows()[0]["state"] == "spooled"
        assert m.object_keys(PREFIX) == []
        tls_s3.stop()
        tls_s3.start("srv")
        row = m.wait_uploaded("b.jpg")
        assert m.object(row["s3_key"]) == data
    finally:
        m.stop()


def test_tls_insecure_skip_verify_warns(thumbfs_bin, tmp_path, s3server,
                                        tls_s3):
    m = tls_mount(thumbfs_bin, tmp_path, s3server, tls_s3.endpoint,
                  insecure_skip_verify="true").start()
    try:
        shutil.copy(photos()[2], m.batch() / "c.jpg")
        m.wait_uploaded("c.jpg")
        assert "NOT checked" in m.log_text()
    finally:
        m.stop()
    m.start()  # at every start
    m.stop()
    assert m.log_text().count("insecure_skip_verify = true") >= 4


def test_unlink_drops_cached_content_at_once(thumbfs_bin, tmp_path,
                                             s3server):
    """The local copies of an unlinked image (the spool file and the cached
    thumbnail) are gone when unlink() returns, not left for eviction."""
    m = Mount(thumbfs_bin, tmp_path, "s3", s3server).start()
    try:
        d = m.batch()
        shutil.copy(photos()[0], d / "a.jpg")
        m.wait_uploaded("a.jpg")
        assert (d / "a_thumb.jpg").read_bytes()[:2] == b"\xff\xd8"
        cached = lambda: sorted(
            str(p.relative_to(m.data)) for p in m.data.rglob("*")
            if p.is_file() and p.name.startswith("a"))
        assert cached() == ["spool/patients/P1/2025-11-10/a.jpg",
                            "thumbs/P1/2025-11-10/a_thumb.jpg"]
        os.unlink(d / "a.jpg")
        assert cached() == []
    finally:
        m.stop()
