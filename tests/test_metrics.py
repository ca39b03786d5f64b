"""Prometheus metrics (#30): [metrics] listen serves /metrics in
Prometheus's text format; the values move as an ingest and a store outage
go, and promtool (Debian's prometheus package) lints every scrape and the
README's rules."""
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import (S3_KEY, Mount, pg_mount, photos, proxied_mount,
                      wait_for)

ROOT = Path(__file__).resolve().parent.parent
needs_promtool = pytest.mark.skipif(
    not shutil.which("promtool"),
    reason="promtool (Debian's prometheus package) is not installed")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics_mount(m):
    m.port = free_port()
    m.config["metrics"] = {"listen": f"127.0.0.1:{m.port}"}
    return m


def scrape(m):
    """The scrape's text, linted by promtool, and its samples as
    {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics",
                                timeout=20) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith(
            "text/plain; version=0.0.4")
        text = r.read().decode()
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr + text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@needs_promtool
def test_metrics_move_as_images_go_in(thumbfs_bin, tmp_path, s3server,
                                      clean_postgres):
    m = metrics_mount(pg_mount(thumbfs_bin, tmp_path, s3server,
                               clean_postgres)).start()
    try:
        before = scrape(m)
        assert before["thumbfs_images_stored_total"] == 0
        assert before["thumbfs_store_up"] == 1
        assert before['thumbfs_build_info{version="0.1.0"}'] == 1
        d = m.batch()
        sent = 0
        for i, p in enumerate(photos()[:4]):
            data = p.read_bytes()
            (d / f"img{i}.jpg").write_bytes(data)
            sent += len(data)
        (d / "notes.txt").write_text("not an image")
        for i in range(4):
            m.wait_uploaded(f"img{i}.jpg")
        m.wait_uploaded("notes.txt")
        wait_for(lambda: scrape(m)[
            "thumbfs_ingest_postgres_seconds_count"] == 4, 60,
            "4 rows in PostgreSQL")
        s = scrape(m)
        assert s["thumbfs_images_stored_total"] == 4
        assert s["thumbfs_other_files_stored_total"] == 1
        assert s["thumbfs_thumbnails_made_total"] == 4
        assert s['thumbfs_failures_total{kind="thumbnail"}'] == 1
        assert s['thumbfs_failures_total{kind="store"}'] == 0
        assert s["thumbfs_stored_bytes_total"] > sent
        assert s['thumbfs_catalog_files{state="uploaded"}'] == 4
        assert s['thumbfs_catalog_files{state="other"}'] == 1
        assert s["thumbfs_catalog_thumbnail_errors"] == 1
        # close() to stored and to PostgreSQL: four each, in order
        assert s["thumbfs_ingest_stored_seconds_count"] == 4
        assert s['thumbfs_ingest_stored_seconds_bucket{le="+Inf"}'] == 4
        assert 0 < s["thumbfs_ingest_stored_seconds_sum"] < 4 * 60
        assert (s["thumbfs_ingest_postgres_seconds_sum"] >=
                s["thumbfs_ingest_stored_seconds_sum"])
        wait_for(lambda: sum(v for k, v in scrape(m).items()
                             if k.startswith("thumbfs_queue_jobs{")) == 0,
                 60, "the queue to drain")
        s = scrape(m)
        assert s["thumbfs_queue_oldest_job_age_seconds"] == 0
        assert s["thumbfs_postgres_sync_lag_seconds"] == 0
        assert s["thumbfs_postgres_up"] == 1
        assert s["thumbfs_store_last_success_timestamp_seconds"] > \
            time.time() - 120
        assert s["thumbfs_postgres_last_success_timestamp_seconds"] > \
            time.time() - 120
        assert s["thumbfs_cache_bytes"] >= sent
    finally:
        m.stop()


@needs_promtool
def test_metrics_show_rows_waiting_for_postgresql(thumbfs_bin, tmp_path,
                                                  s3server, clean_postgres):
    """The web app's table locked by a long transaction (a migration): the
    image is stored, its row waits, and the sync lag grows in the metrics
    and in thumbfs check; then the row lands and the lag is 0."""
    m = metrics_mount(pg_mount(thumbfs_bin, tmp_path, s3server,
                               clean_postgres)).start()
    lock = None
    try:
        wait_for(lambda: scrape(m)["thumbfs_postgres_up"] == 1, 30,
                 "PostgreSQL to be up")
        lock = subprocess.Popen(
            ["psql", "-X", "-q", clean_postgres.dsn, "-c",
             "BEGIN; LOCK TABLE images_image; SELECT pg_sleep(12); COMMIT"],
            stdout=subprocess.DEVNULL)
        time.sleep(1)
        (m.batch() / "a.jpg").write_bytes(photos()[0].read_bytes())
        m.wait_uploaded("a.jpg")
        wait_for(lambda: scrape(m)["thumbfs_postgres_sync_lag_seconds"] >= 3,
                 30, "the sync lag to grow")
        r = subprocess.run([str(m.binary), "check", str(m.conf),
                            "--sync-lag", "3,600"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1 and "sync_lag" in r.stdout, r.stdout
        assert lock.wait(60) == 0
        wait_for(lambda: scrape(m)[
            "thumbfs_ingest_postgres_seconds_count"] == 1, 60,
            "the row to reach PostgreSQL")
        s = scrape(m)
        assert s["thumbfs_postgres_sync_lag_seconds"] == 0
        assert s["thumbfs_ingest_postgres_seconds_sum"] >= 3
    finally:
        if lock and lock.poll() is None:
            lock.kill()
        m.stop()


@needs_promtool
def test_metrics_show_a_store_that_refuses(thumbfs_bin, tmp_path, s3server,
                                           proxy):
    """Revoked credentials: the store is down and refusing, failures
    count, the upload waits in the queue and its age grows; fixed
    credentials (SIGHUP) bring it all back."""
    m = metrics_mount(proxied_mount(thumbfs_bin, tmp_path, s3server,
                                    proxy)).start()
    try:
        proxy.deny_key(S3_KEY)
        (m.batch() / "a.jpg").write_bytes(photos()[0].read_bytes())
        wait_for(lambda: scrape(m)["thumbfs_store_refused"] == 1, 60,
                 "the refusal to show")
        s = scrape(m)
        assert s["thumbfs_store_up"] == 0
        assert s['thumbfs_failures_total{kind="store"}'] >= 1
        assert s['thumbfs_queue_jobs{kind="ingest"}'] == 1
        assert s["thumbfs_images_stored_total"] == 0
        # (ages are whole seconds apart: 3 is over 2 s)
        wait_for(lambda: scrape(m)[
            "thumbfs_queue_oldest_job_age_seconds"] >= 3, 30,
            "the waiting job to age")
        proxy.faults.clear()
        m.proc.send_signal(1)  # SIGHUP: credentials read again
        m.wait_uploaded("a.jpg")
        wait_for(lambda: scrape(m)["thumbfs_store_up"] == 1, 30,
                 "the store to be up")
        s = scrape(m)
        assert s["thumbfs_store_refused"] == 0
        assert s["thumbfs_images_stored_total"] == 1
        assert s["thumbfs_ingest_stored_seconds_count"] == 1
        assert s["thumbfs_ingest_stored_seconds_sum"] >= 2
    finally:
        m.stop()


@needs_promtool
def test_metrics_show_a_store_that_fails_for_a_while(thumbfs_bin, tmp_path,
                                                     s3server, proxy):
    """503s: store_up goes to 0 and back once a request succeeds."""
    m = metrics_mount(proxied_mount(thumbfs_bin, tmp_path, s3server,
                                    proxy)).start()
    try:
        proxy.fail(10**6)  # until cleared
        (m.batch() / "a.jpg").write_bytes(photos()[0].read_bytes())
        wait_for(lambda: scrape(m)["thumbfs_store_up"] == 0, 30,
                 "the store to be down")
        # and stays down while its writes fail, though it answers the
        # runners' probe (a HEAD of the bucket) every second: that made
        # store_up flap to 1 (in a CI run, never 0 for 30 s)
        for _ in range(12):
            time.sleep(0.25)
            assert scrape(m)["thumbfs_store_up"] == 0
        assert scrape(m)['thumbfs_failures_total{kind="store"}'] >= 1
        assert scrape(m)["thumbfs_store_refused"] == 0
        proxy.faults.clear()
        m.wait_uploaded("a.jpg", 90)
        wait_for(lambda: scrape(m)["thumbfs_store_up"] == 1, 30,
                 "the store to be up again")
        s = scrape(m)
        assert s["thumbfs_images_stored_total"] == 1
        assert "thumbfs_postgres_up" not in s  # no [postgres] dsn
    finally:
        m.stop()


def test_metrics_answer_only_get_metrics(thumbfs_bin, tmp_path):
    m = metrics_mount(Mount(thumbfs_bin, tmp_path, "file")).start()
    try:
        url = f"http://127.0.0.1:{m.port}"
        for path, method, code in (("/", "GET", 404), ("/metrics", "POST",
                                                         405)):
            req = urllib.request.Request(url + path, method=method,
                                         data=b"" if method == "POST"
                                         else None)
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=10)
            assert e.value.code == code
        assert "metrics at http://127.0.0.1:" in m.log_text()
    finally:
        m.stop()


def test_metrics_port_taken_stops_the_mount_with_a_clear_error(
        thumbfs_bin, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        m = Mount(thumbfs_bin, tmp_path, "file")
        m.args = ["-o", f"metrics=127.0.0.1:{port}"]
        m.start(check=False)
        assert m.proc.wait(30) == 1
        text = m.log_text()
        assert (f"cannot listen on 127.0.0.1:{port} for metrics: "
                "Address already in use") in text, text
        assert not Path(m.mnt).is_mount()
        for bad, says in (("9567", "is not HOST:PORT"),
                          ("nohost.invalid:9567", "metrics listen")):
            m.config["metrics"] = {"listen": bad}
            m.args = []
            m.start(check=False)
            assert m.proc.wait(30) == 1
            assert says in m.log_text(), m.log_text()
    finally:
        busy.close()


def readme_block(after):
    """The first ``` block of README.md after the line holding after."""
    text = (ROOT / "README.md").read_text()
    start = text.index(after)
    m = re.search(r"```[a-z]*\n(.*?)```", text[start:], re.S)
    return m.group(1)


@needs_promtool
def test_readme_prometheus_config_and_alerts_pass_promtool(tmp_path):
    """The README's scrape config and alert rules are what promtool takes,
    and the alert fires on images that stop reaching the web app (a unit
    test of the rules with promtool test rules)."""
    rules = tmp_path / "thumbfs.rules.yml"
    rules.write_text(readme_block("Alert rules: images"))
    conf = tmp_path / "prometheus.yml"
    conf.write_text(readme_block("gauges are read from the catalog").replace(
        "/etc/prometheus/thumbfs.rules.yml", str(rules)))
    for args in (["check", "config", str(conf)],
                 ["check", "rules", str(rules)]):
        p = subprocess.run(["promtool", *args], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
    test = tmp_path / "test.yml"
    test.write_text(f"""rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'thumbfs_queue_oldest_job_age_seconds{{instance="a"}}'
        values: '0+600x80'
      - series: 'thumbfs_store_up{{instance="a"}}'
        values: '1x80'
      - series: 'thumbfs_postgres_sync_lag_seconds{{instance="a"}}'
        values: '0x80'
      - series: 'thumbfs_store_up{{instance="b"}}'
        values: '1 0x80'
      - series: 'thumbfs_queue_oldest_job_age_seconds{{instance="b"}}'
        values: '0x80'
      - series: 'thumbfs_postgres_sync_lag_seconds{{instance="b"}}'
        values: '0x80'
    alert_rule_test:
      - eval_time: 10m
        alertname: ThumbfsImagesNotReachingWebApp
        exp_alerts: []
      - eval_time: 1h10m
        alertname: ThumbfsImagesNotReachingWebApp
        exp_alerts:
          - exp_labels: {{severity: page, instance: a}}
            exp_annotations:
              summary: "Images written to thumbfs on a are not reaching the web app"
      - eval_time: 19m
        alertname: ThumbfsStoreDown
        exp_alerts:
          - exp_labels: {{severity: page, instance: b}}
            exp_annotations:
              summary: "The store refuses or fails thumbfs's uploads on b"
""")
    p = subprocess.run(["promtool", "test", "rules", str(test)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
