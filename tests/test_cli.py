import pytest

from stream_server.cli import build_parser, main, settings_from_args


def settings_for(argv, env=None):
    env = env or {}
    return settings_from_args(build_parser(env).parse_args(["serve", *argv]), env)


def test_keys_balances_and_prices_from_flags():
    s = settings_for(
        ["--api-key", "k1", "--admin-key", "adm", "--key-balance", "k1=90", "--completion-price-per-million", "3"]
    )
    assert (s.api_keys, s.admin_keys, s.key_balances) == (("k1",), ("adm",), (("k1", 90.0),))
    assert (s.prompt_price_per_million, s.completion_price_per_million, s.currency) == (0.0, 3.0, "USD")


def test_keys_balances_and_prices_from_environment():
    env = {
        "STREAM_SERVER_API_KEYS": "k1, k2",
        "STREAM_SERVER_ADMIN_KEYS": "adm",
        "STREAM_SERVER_KEY_BALANCES": "k1=10,k2=2.5",
        "STREAM_SERVER_PROMPT_PRICE_PER_MILLION": "1.5",
        "STREAM_SERVER_CURRENCY": "EUR",
    }
    s = settings_for([], env)
    assert s.api_keys == ("k1", "k2") and s.admin_keys == ("adm",)
    assert s.key_balances == (("k1", 10.0), ("k2", 2.5))
    assert (s.prompt_price_per_million, s.currency) == (1.5, "EUR")


@pytest.mark.parametrize("balance", ["k1", "k1=lots", "k1=-1", "unknown=5"])
def test_bad_balances_stop_the_server(balance, tmp_path):
    argv = ["serve", "--data-dir", str(tmp_path), "--api-key", "k1", "--key-balance", balance]
    assert main(argv, env={}) == 2


def test_capacity_flags_and_their_environment_twins():
    s = settings_for(["--max-streams", "6", "--max-streams-per-key", "2", "--decode-slots", "1"])
    assert (s.max_streams, s.max_streams_per_key, s.decode_slots) == (6, 2, 1)
    env = {"STREAM_SERVER_MAX_STREAMS": "4", "STREAM_SERVER_MAX_STREAMS_PER_KEY": "1", "STREAM_SERVER_TARGET_UTILISATION": "0.7"}
    s = settings_for([], env)
    assert (s.max_streams, s.max_streams_per_key, s.target_utilisation) == (4, 1, 0.7)
    assert settings_for([]).max_streams == 0 and settings_for([]).estimate_capacity  # the estimate alone by default
    assert not settings_for(["--no-capacity-estimate"]).estimate_capacity
    assert not settings_for([], {"STREAM_SERVER_NO_CAPACITY_ESTIMATE": "1"}).estimate_capacity


@pytest.mark.parametrize("flags", [["--decode-slots", "0"], ["--max-streams", "-1"], ["--target-utilisation", "1.5"]])
def test_bad_capacity_flags_stop_the_server(flags, tmp_path):
    assert main(["serve", "--data-dir", str(tmp_path), *flags], env={}) == 2
