"""A real headless Chromium on the wallboard while a capture is replayed into the daemon.

The daemon (build_service: journal, engine, store, live state, web) runs against the
ESL test peer; the capture ``abandoned_long`` is sent in two parts: up to the caller
joining the billing queue, then the rest (the caller hangs up). The browser, driven by
selenium through Debian's chromedriver, must show the caller waiting, then the queue
empty again, pushed by the live stream alone (the page never reloads).
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import gevent
import pytest

from daemon.definition.config import load_center
from daemon.service import build_service
from tests.eslpeer import capture_event_frames

REPO = Path(__file__).resolve().parent.parent
CAPTURE = REPO / "tests" / "data" / "captures" / "abandoned_long.esl"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BILLING = "billing@hotline.test"


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are needed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)


def blocking(fn, *args):
    """Selenium blocks on HTTP to chromedriver: a real thread, so the daemon's hub runs."""
    return gevent.get_hub().threadpool.apply(fn, args)


def until(driver, script: str, what: str, timeout: float = 15.0):
    from selenium.webdriver.support.ui import WebDriverWait

    def wait():
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
            lambda d: d.execute_script(script), message=what)
    return blocking(wait)


WAITING = f"""(function () {{
  const q = document.querySelector('[data-queue="{BILLING}"]');
  return q ? q.querySelector('.waiting-count').textContent : null; }})()"""


def test_the_wallboard_shows_a_caller_join_the_queue_and_leave_it(tmp_path):
    from tests.test_control import RecordingPeer
    from tests.test_daemon_integration import settings_for

    frames = capture_event_frames(CAPTURE)
    join = next(i for i, f in enumerate(frames) if b"CC-Action: member-queue-start" in f)
    center = load_center(REPO / "config")
    with RecordingPeer() as peer:
        peer.script("sendevent", "+OK 5b3c3c8e-0000-4000-8000-000000000001")
        settings = dataclasses.replace(settings_for(peer, tmp_path), http_listen="127.0.0.1:0")
        service = build_service(settings, center)
        runner = gevent.spawn(service.run)
        driver = None
        try:
            peer.wait_subscribed()
            driver = blocking(browser)
            host, port = service.http.address
            blocking(driver.get, f"http://{host}:{port}/wallboard")
            until(driver, "return document.querySelector('.status.live') !== null",
                  "the wallboard says live")
            assert until(driver, f"return ({WAITING}) === '0'", "billing shows 0 waiting")
            peer.replay(frames[: join + 2])
            until(driver, f"return ({WAITING}) === '1'", "the caller appears in billing")
            caller = blocking(driver.execute_script, f"""
                return document.querySelector('[data-queue="{BILLING}"] .caller').textContent""")
            assert caller.startswith("1")  # the caller's number, with its ticking wait
            peer.replay(frames[join + 2:])
            until(driver, f"return ({WAITING}) === '0'", "the caller left billing")
            blocking(driver.save_screenshot, str(tmp_path / "wallboard.png"))
            # and the page never reloaded: the same document got every view
            assert blocking(driver.execute_script,
                            "return performance.getEntriesByType('navigation').length") == 1
        finally:
            if driver is not None:
                blocking(driver.quit)
            service.stop()
            runner.join(15)


def test_the_wallboard_says_stale_while_the_daemon_is_away_and_recovers_by_itself():
    """Stop the server under an open page: the banner says STALE and the numbers are struck
    through; start it again on the same port: the page reconnects without a reload."""
    from daemon.engine.records import LiveChange
    from daemon.live.http_api import HttpApi
    from daemon.live.state import MemoryLiveState
    from tests.test_http_api import free_port

    center = load_center(REPO / "config")
    port = free_port()
    live = MemoryLiveState()
    api = HttpApi(f"127.0.0.1:{port}", live.snapshot, center).start()
    driver = None
    try:
        driver = blocking(browser)
        blocking(driver.get, f"http://127.0.0.1:{port}/wallboard")
        until(driver, "return document.querySelector('.status.live') !== null", "live")
        api.stop()  # the daemon goes away
        until(driver, """return document.getElementById('status').textContent.startsWith('STALE')
                         && document.getElementById('board').classList.contains('stale')""",
              "the page says stale", timeout=30)
        now = int(__import__("time").time() * 1000)
        live.apply([LiveChange("member", BILLING, (("call_id", "c9"), ("caller", "1555"),
                                                   ("joined_ms", now), ("action", "join")), now)])
        api = HttpApi(f"127.0.0.1:{port}", live.snapshot, center).start()  # back again
        until(driver, f"return ({WAITING}) === '1'", "the page reconnected by itself",
              timeout=30)
        until(driver, "return document.querySelector('.status.live') !== null", "live again")
        assert blocking(driver.execute_script,
                        "return performance.getEntriesByType('navigation').length") == 1
    finally:
        if driver is not None:
            blocking(driver.quit)
        api.stop()
