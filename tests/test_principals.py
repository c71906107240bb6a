import hashlib

from stream_server.principals import KeyRing, key_id


def test_keys_are_known_by_their_sha256_only():
    ring = KeyRing(["k1"], ["adm"], {"k1": 60})
    assert key_id("k1") == hashlib.sha256(b"k1").hexdigest()
    k1, admin = ring.identify("k1"), ring.identify("adm")
    assert (k1.key_id, k1.is_admin, k1.balance_seconds) == (key_id("k1"), False, 60.0)
    assert (admin.is_admin, admin.balance_seconds) == (True, None)
    assert ring.identify("k2") is None
    assert "k1" not in repr(vars(ring))


def test_access_is_the_owner_or_an_admin():
    ring = KeyRing(["a", "b"], ["adm"])
    a, b, admin = ring.identify("a"), ring.identify("b"), ring.identify("adm")
    assert a.may_access(a.key_id) and not b.may_access(a.key_id) and admin.may_access(a.key_id)


def test_no_keys_means_authentication_off():
    assert not KeyRing().enabled
    assert KeyRing(admin_keys=["adm"]).enabled
