"""The ssl default context and urllib opener the parent installed reach the workers (workers.webdefaults)."""

from __future__ import annotations

import ssl
import urllib.request

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.workers import webdefaults


@pytest.fixture
def restored():
    factory, opener = ssl._create_default_https_context, urllib.request._opener
    yield
    ssl._create_default_https_context = factory
    urllib.request.install_opener(opener)


def _made(_=None):
    """What a task's urlopen would connect with: the HTTPS check, the User-agent header."""
    opener = urllib.request._opener
    agent = None if opener is None else dict(opener.addheaders).get("User-agent")
    return ssl._create_default_https_context().verify_mode, agent


def _browser_opener():
    opener = urllib.request.build_opener()
    opener.addheaders = [("User-agent", "Mozilla/5.0")]
    return opener


def test_a_tasks_urlopen_uses_the_parents_ssl_default_and_opener_as_in_the_loop(restored):
    # the script's top lines, run after the workers started: a warm worker verified the
    # certificate (CERTIFICATE_VERIFY_FAILED) and sent Python's User-agent (a 403), as under joblib
    with Executor(max_workers=1) as ex:
        assert ex.submit(_made).result() == (ssl.CERT_REQUIRED, None)
        ssl._create_default_https_context = ssl._create_unverified_context
        urllib.request.install_opener(_browser_opener())
        loop = _made()
        assert loop == (ssl.CERT_NONE, "Mozilla/5.0")
        assert ex.submit(_made).result() == loop
    assert Parallel(n_jobs=2)(delayed(_made)(i) for i in range(2)) == [loop, loop]


def _undo(_=None):
    ssl._create_default_https_context = ssl.create_default_context
    urllib.request.install_opener(None)


def test_a_tasks_own_setting_is_its_batchs_and_the_workers_own_comes_back(restored):
    with Executor(max_workers=1) as ex:
        ssl._create_default_https_context = ssl._create_unverified_context
        urllib.request.install_opener(_browser_opener())
        ex.submit(_undo).result()  # a task's own: not the next batch's
        assert ex.submit(_made).result() == (ssl.CERT_NONE, "Mozilla/5.0")
        ssl._create_default_https_context = ssl.create_default_context  # the parent's default again
        urllib.request.install_opener(None)
        assert ex.submit(_made).result() == (ssl.CERT_REQUIRED, None)


def test_the_opener_urlopen_builds_itself_is_not_sent(restored, tmp_path):
    urllib.request.install_opener(None)
    ssl._create_default_https_context = ssl.create_default_context
    (tmp_path / "a.txt").write_text("x")
    assert urllib.request.urlopen(tmp_path.joinpath("a.txt").as_uri()).read() == b"x"
    assert urllib.request._opener is not None  # (urlopen installed its own)
    assert webdefaults.pickled() is None


def test_an_opener_that_cannot_be_pickled_is_left_out_not_the_ssl_default(restored):
    opener = _browser_opener()
    opener.held = (i for i in range(1))  # (as an SSLContext: it does not pickle)
    urllib.request.install_opener(opener)
    ssl._create_default_https_context = ssl._create_unverified_context
    with Executor(max_workers=1) as ex:
        assert ex.submit(_made).result() == (ssl.CERT_NONE, None)


def _checks(_=None):
    """How the HTTPS handler of the installed opener checks certificates."""
    opener = urllib.request._opener
    (handler,) = [h for h in opener.handlers if isinstance(h, urllib.request.HTTPSHandler)]
    return handler._context.verify_mode, handler._context.check_hostname, dict(opener.addheaders)


def test_an_opener_holding_an_ssl_context_is_sent_as_how_it_checks(restored):
    # build_opener(HTTPSHandler(context=ssl._create_unverified_context())), and every opener from
    # Python 3.12 on (its HTTPSHandler makes a context): an SSLContext does not pickle
    for context in (ssl._create_unverified_context(), ssl.create_default_context()):
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        opener.addheaders = [("User-agent", "Mozilla/5.0")]
        urllib.request.install_opener(opener)
        loop = _checks()
        with Executor(max_workers=1) as ex:
            assert ex.submit(_checks).result() == loop
