"""Login throttling (lexyjobs.ratelimit) slows whoever guesses, not the account's owner: the
throttle's rules on a fake clock, the login form on both databases, and a real server attacked
from 127.0.0.2 while the owner logs in from 127.0.0.1."""
from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from liveserver import running_server

from lexyjobs import accounts, audit
from lexyjobs.db import Database
from lexyjobs.ratelimit import (PAIR_FREE_FAILURES, PAIR_MAX_DELAY, USER_MAX_DELAY, USER_STEP_DELAY, WINDOW,
                                LoginThrottle, address_key, pair_delay)

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
PER_MINUTE = 10


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: LoginThrottle, address: str, username: str) -> bool:
    """One wrong password; True when it was let through (and so counted)."""
    return not throttle.attempt(address, username).refused_for


# ------------------------------------------------------------------ the rules, on a fake clock

def test_a_pair_gets_free_failures_then_delays_that_double_up_to_the_cap():
    clock = FakeClock()
    throttle = LoginThrottle(1000, clock=clock)
    for _ in range(PAIR_FREE_FAILURES):
        assert fail(throttle, "a", ADMIN)
    waits = []
    for _ in range(12):
        refusal = throttle.attempt("a", ADMIN)
        assert refusal.refused_for > 0 and refusal.reason == "pair"
        waits.append(refusal.refused_for)
        clock.now += refusal.refused_for
        assert fail(throttle, "a", ADMIN)
    assert waits[:4] == [pytest.approx(pair_delay(PAIR_FREE_FAILURES + i)) for i in range(4)]
    assert waits[:4] == [pytest.approx(w) for w in (1.0, 2.0, 4.0, 8.0)]
    assert waits[-1] == pytest.approx(PAIR_MAX_DELAY)


def test_the_owner_from_another_address_is_never_refused_however_often_the_name_fails():
    clock = FakeClock()
    throttle = LoginThrottle(PER_MINUTE, clock=clock)
    for i in range(500):  # 500 failures on admin from 50 addresses within the minute
        throttle.attempt(f"10.0.0.{i % 50}", ADMIN)
        clock.now += 0.1
    owner = throttle.attempt("192.0.2.1", ADMIN)
    assert owner.refused_for == 0
    assert 0 < owner.delay <= USER_MAX_DELAY  # slowed a little, bounded
    owner.succeeded()
    assert throttle.attempt("192.0.2.1", ADMIN).refused_for == 0  # and again


def test_the_username_delay_grows_with_failures_beyond_the_budget_and_stops_at_the_cap():
    clock = FakeClock()
    throttle = LoginThrottle(PER_MINUTE, clock=clock)
    delays = []
    for i in range(PER_MINUTE + 40):
        attempt = throttle.attempt(f"10.1.0.{i}", ADMIN)  # a fresh address each time: never refused
        assert attempt.refused_for == 0
        delays.append(attempt.delay)
    assert delays[:PER_MINUTE + 1] == [0.0] * (PER_MINUTE + 1)
    assert delays[PER_MINUTE + 1] == pytest.approx(USER_STEP_DELAY)
    assert max(delays) == pytest.approx(USER_MAX_DELAY)
    clock.now += WINDOW + 1
    assert throttle.attempt("10.1.1.1", ADMIN).delay == 0.0  # the failures have left the minute


def test_an_address_spraying_many_usernames_is_refused_until_its_minute_frees():
    clock = FakeClock()
    throttle = LoginThrottle(PER_MINUTE, clock=clock)
    for i in range(PER_MINUTE):
        assert fail(throttle, "a", f"user{i}")
        clock.now += 1
    refusal = throttle.attempt("a", "someone-else")
    assert refusal.reason == "address" and refusal.refused_for == pytest.approx(WINDOW - PER_MINUTE)
    assert throttle.attempt("b", "someone-else").refused_for == 0  # other addresses are not concerned
    clock.now += refusal.refused_for
    assert fail(throttle, "a", "someone-else")


def test_a_success_is_not_a_failure_and_forgets_the_pair():
    clock = FakeClock()
    throttle = LoginThrottle(PER_MINUTE, clock=clock)
    for _ in range(PAIR_FREE_FAILURES):
        assert fail(throttle, "a", ADMIN)
    clock.now += pair_delay(PAIR_FREE_FAILURES)
    throttle.attempt("a", ADMIN).succeeded()
    for _ in range(PAIR_FREE_FAILURES):  # the typos before the success no longer count
        assert fail(throttle, "a", ADMIN)
    for _ in range(3 * PER_MINUTE):  # successes never use the address's budget
        throttle.attempt("b", f"user{_}").succeeded()
    assert throttle.attempt("b", "x").refused_for == 0


def test_parallel_attempts_cannot_slip_past_a_budget_while_passwords_are_checked():
    throttle = LoginThrottle(PER_MINUTE)
    barrier = threading.Barrier(40)
    let_through: list[bool] = []

    def one(i: int) -> None:
        barrier.wait()
        let_through.append(fail(throttle, "a", f"user{i}"))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(let_through) == PER_MINUTE


def test_an_ipv6_client_draws_on_the_budget_of_its_64_network():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:10.0.0.5") == "10.0.0.5" and address_key("10.0.0.5") == "10.0.0.5"
    assert address_key(None) == "-" and address_key("unix-socket") == "unix-socket"


# ------------------------------------------------------------------ the login form (both databases)

@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "login_attempts_per_minute": PER_MINUTE}


@pytest.fixture
def admin_user(db: Database) -> str:
    accounts.add_user(db, ADMIN, ADMIN_PASSWORD, "admin")
    return ADMIN


@pytest.fixture
def still_clock(app: Flask) -> FakeClock:
    """The app's throttle on a clock that stands still (a slow machine cannot let a delay pass)."""
    clock = FakeClock()
    app.extensions["lexyjobs_login_throttle"] = LoginThrottle(PER_MINUTE, clock=clock)
    return clock


def client_from(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def attempt(client: FlaskClient, username: str, password: str, **headers: str) -> Any:
    found = CSRF_FIELD.search(client.get("/login").get_data(as_text=True))
    assert found
    return client.post("/login", data={"username": username, "password": password, "csrf_token": found.group(1)},
                       headers=headers)


def test_failures_on_the_admin_from_one_address_do_not_lock_the_admin_out(app, db, admin_user, still_clock):
    attacker = client_from(app, "10.0.0.5")
    answers = [attempt(attacker, ADMIN, f"wrong-{i}").status_code for i in range(30)]
    assert answers[:PAIR_FREE_FAILURES] == [401] * PAIR_FREE_FAILURES
    assert set(answers[PAIR_FREE_FAILURES:]) == {429}  # the next attempt would have to wait a second
    refused = attempt(attacker, ADMIN, ADMIN_PASSWORD)
    assert refused.status_code == 429 and "Too many login attempts" in refused.get_data(as_text=True)
    assert int(refused.headers["Retry-After"]) >= 1
    for address in ("10.0.0.6", "10.0.0.7"):  # the owner, elsewhere: in at once
        assert attempt(client_from(app, address), ADMIN, ADMIN_PASSWORD).status_code == 302
    spelled = attempt(client_from(app, "10.0.0.8"), " ADMIN ", ADMIN_PASSWORD)
    assert spelled.status_code == 302
    spoofed = attempt(attacker, ADMIN, "wrong", **{"X-Forwarded-For": "10.9.9.9"})
    assert spoofed.status_code == 429  # no trusted proxy: the header does not change the address
    ipv6 = [attempt(client_from(app, f"2001:db8::{i}"), ADMIN, "wrong").status_code for i in range(1, 10)]
    assert ipv6 == [401] * PAIR_FREE_FAILURES + [429] * (9 - PAIR_FREE_FAILURES)  # one /64, one budget
    assert audit.search(db, action="login.success").total == 3


def test_an_address_trying_many_usernames_is_refused_but_others_are_not(app, db, admin_user, still_clock):
    accounts.add_user(db, "carol", "carol-password-1", "viewer")
    sprayer = client_from(app, "10.0.0.5")
    answers = [attempt(sprayer, f"user{i}", "password-1").status_code for i in range(PER_MINUTE + 5)]
    assert answers == [401] * PER_MINUTE + [429] * 5
    assert attempt(sprayer, "carol", "carol-password-1").status_code == 429  # this address waits its minute
    assert attempt(client_from(app, "10.0.0.6"), "carol", "carol-password-1").status_code == 302


# ------------------------------------------------------------------ a real server, two client addresses

@dataclass
class LoginClient:
    """A browser-like client of the login form on ``port``, its socket bound to ``source``."""

    port: int
    source: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: dict[str, str] | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(self.source, 0))
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        data = None
        if body is not None:
            data = urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name] = rest.split(";")[0]
            return response.status, response.read().decode()
        finally:
            connection.close()

    def log_in(self, username: str, password: str) -> tuple[int, float]:
        """GET the form, POST it; the POST's status and how long it took."""
        status, page = self.request("GET", "/login")
        token = CSRF_FIELD.search(page)
        assert status == 200 and token, page
        started = time.monotonic()
        status, _ = self.request("POST", "/login", {"username": username, "password": password,
                                                    "csrf_token": token.group(1)})
        return status, time.monotonic() - started


def test_an_attacker_failing_every_half_second_does_not_keep_the_owner_out_of_a_real_server(
        db_url: str, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("")
    with running_server(db_url, jobs_file, LEXYJOBS_ADMIN_PASSWORD=ADMIN_PASSWORD) as server:
        port = urlsplit(server.url).port
        assert port
        baseline = [LoginClient(port, "127.0.0.1").log_in(ADMIN, ADMIN_PASSWORD) for _ in range(3)]
        assert [status for status, _ in baseline] == [302] * 3
        stop = threading.Event()
        attacker: list[int] = []

        def attack() -> None:
            client = LoginClient(port, "127.0.0.2")
            while not stop.is_set():
                attacker.append(client.log_in(ADMIN, "not-the-password")[0])
                stop.wait(0.5)
        thread = threading.Thread(target=attack, daemon=True)
        started = time.monotonic()
        thread.start()
        owner = []
        try:
            time.sleep(3)  # the attacker has used up the free failures by now
            for _ in range(12):
                owner.append(LoginClient(port, "127.0.0.1").log_in(ADMIN, ADMIN_PASSWORD))
                time.sleep(1.5)
        finally:
            stop.set()
            thread.join(timeout=60)
        elapsed = time.monotonic() - started
    checked = attacker.count(401)
    base = sorted(t for _, t in baseline)[1]
    print(f"\nattacker: {len(attacker)} attempts sent in {elapsed:.0f} s, {checked} checked "
          f"({checked / elapsed * 60:.1f}/min), {attacker.count(429)} refused; owner: "
          f"{sum(s == 302 for s, _ in owner)}/12 logged in, median POST {sorted(t for _, t in owner)[6] * 1000:.0f} ms "
          f"(before the attack {base * 1000:.0f} ms)")
    assert [status for status, _ in owner] == [302] * 12
    assert set(attacker) <= {401, 429} and attacker.count(429) > checked
    # the pair's schedule: free failures, then 1, 2, 4 … s apart
    allowed, at = PAIR_FREE_FAILURES, 0.0
    while (at := at + pair_delay(allowed)) <= elapsed:
        allowed += 1
    assert checked <= allowed + 1
