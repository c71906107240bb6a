"""`stream-server serve`: flags and environment variables become Settings; unsafe binds refused."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from stream_server import cli
from stream_server.cli import build_parser, main, settings_from_args
from stream_server.flags import flag_of
from stream_server.settings import MEGABYTE, Settings
from stream_server.transports.appkeys import SETTINGS


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Settings of each app `main` would have run; run_app itself is replaced."""
    apps: list[Settings] = []
    monkeypatch.setattr(cli.web, "run_app", lambda app, **kwargs: apps.append(app[SETTINGS]))
    return apps


def test_environment_becomes_settings(served, tmp_path):
    env = {
        "STREAM_SERVER_HOST": "::1",
        "STREAM_SERVER_PORT": "18123",
        "STREAM_SERVER_MODEL": "base",
        "STREAM_SERVER_DEVICE": "cpu",
        "STREAM_SERVER_COMPUTE_TYPE": "float32",
        "STREAM_SERVER_CPU_THREADS": "1",
        "STREAM_SERVER_API_KEYS": "k1, k2,,",
        "STREAM_SERVER_DATA_DIR": str(tmp_path),
        "STREAM_SERVER_MAX_UPLOAD_MB": "2.5",
    }
    assert cli.main([], env=env) == 0
    assert served == [
        Settings(
            host="::1",
            port=18123,
            model="base",
            device="cpu",
            compute_type="float32",
            cpu_threads=1,
            api_keys=("k1", "k2"),
            data_dir=tmp_path,
            max_upload_bytes=int(2.5 * MEGABYTE),
        )
    ]


def test_defaults(served):
    assert cli.main(["serve"], env={}) == 0
    settings = served[0]
    assert (settings.host, settings.port, settings.model) == ("127.0.0.1", 8000, "tiny.en")
    assert settings.api_keys == () and settings.max_upload_bytes == 25 * MEGABYTE


def test_flags_win_over_environment(served):
    env = {"STREAM_SERVER_PORT": "1", "STREAM_SERVER_API_KEYS": "from-env"}
    assert cli.main(["--port", "18124", "--api-key", "a", "--api-key", "b"], env=env) == 0
    assert served[0].port == 18124
    assert served[0].api_keys == ("a", "b")


def test_non_loopback_without_keys_is_refused(served, caplog):
    caplog.set_level(logging.INFO)
    assert cli.main(["--host", "0.0.0.0"], env={}) == 2
    assert served == []
    refusal = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert refusal and "refusing to listen on 0.0.0.0 with no API keys" in refusal[0].getMessage()
    assert "--allow-unauthenticated" in refusal[0].getMessage()


@pytest.mark.parametrize(
    "argv, env",
    [
        (["--host", "0.0.0.0", "--api-key", "k"], {}),
        (["--host", "0.0.0.0", "--allow-unauthenticated"], {}),
        (["--host", "0.0.0.0"], {"STREAM_SERVER_ALLOW_UNAUTHENTICATED": "true"}),
        (["--host", "0.0.0.0"], {"STREAM_SERVER_API_KEYS": "k"}),
    ],
)
def test_non_loopback_with_keys_or_explicit_opt_in(served, argv, env):
    assert cli.main(argv, env=env) == 0
    assert served[0].host == "0.0.0.0"


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("192.168.1.10", False)])
def test_is_loopback(host, loopback):
    assert cli.is_loopback(host) is loopback


def test_module_help():
    root = Path(__file__).resolve().parents[1]
    top = subprocess.run([sys.executable, "-m", "stream_server", "--help"], capture_output=True, text=True, cwd=root)
    assert top.returncode == 0 and "serve" in top.stdout
    serve = subprocess.run(
        [sys.executable, "-m", "stream_server", "serve", "--help"], capture_output=True, text=True, cwd=root
    )
    assert serve.returncode == 0
    for flag, variable in [("--port", "STREAM_SERVER_PORT"), ("--api-key", "STREAM_SERVER_API_KEYS")]:
        assert flag in serve.stdout and variable in serve.stdout

def settings_for(argv, env=None):
    env = env or {}
    return settings_from_args(build_parser().parse_args(["serve", *argv]), env)


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


def test_the_websocket_queue_limit_from_flag_or_environment():
    assert settings_for([]).stream_max_queue_s == 30.0
    assert settings_for(["--stream-max-queue-s", "12"]).stream_max_queue_s == 12.0
    assert settings_for([], {"STREAM_SERVER_STREAM_MAX_QUEUE_S": "5"}).stream_max_queue_s == 5.0


def test_capacity_flags_and_their_environment_twins():
    s = settings_for(["--max-streams", "6", "--max-streams-per-key", "2", "--decode-slots", "1"])
    assert (s.max_streams, s.max_streams_per_key, s.decode_slots) == (6, 2, 1)
    env = {"STREAM_SERVER_MAX_STREAMS": "4", "STREAM_SERVER_MAX_STREAMS_PER_KEY": "1", "STREAM_SERVER_TARGET_UTILISATION": "0.7"}
    s = settings_for([], env)
    assert (s.max_streams, s.max_streams_per_key, s.target_utilisation) == (4, 1, 0.7)
    assert settings_for([]).max_streams == 0 and settings_for([]).estimate_capacity  # the estimate alone by default
    assert not settings_for(["--no-capacity-estimate"]).estimate_capacity
    assert not settings_for([], {"STREAM_SERVER_NO_CAPACITY_ESTIMATE": "1"}).estimate_capacity


def test_the_unsure_word_wait_is_a_setting():
    assert settings_for([]).unsure_word_wait_s == 3.0
    assert settings_for(["--unsure-word-wait", "1.5"]).unsure_word_wait_s == 1.5
    assert settings_for([], {"STREAM_SERVER_UNSURE_WORD_WAIT": "2"}).unsure_word_wait_s == 2.0


def test_window_packing_is_on_unless_turned_off_by_flag_or_environment():
    assert settings_for([]).pack_windows
    assert not settings_for(["--no-pack-windows"]).pack_windows
    assert not settings_for([], {"STREAM_SERVER_PACK_WINDOWS": "0"}).pack_windows
    assert settings_for(["--pack-windows"], {"STREAM_SERVER_PACK_WINDOWS": "0"}).pack_windows  # the flag wins


@pytest.mark.parametrize("flags", [["--decode-slots", "0"], ["--max-streams", "-1"], ["--target-utilisation", "1.5"]])
def test_bad_capacity_flags_stop_the_server(flags, tmp_path):
    assert main(["serve", "--data-dir", str(tmp_path), *flags], env={}) == 2


def test_config_declares_the_providers(tmp_path):
    config = tmp_path / "providers.toml"
    config.write_text('[[providers]]\nname = "cpu8"\nmodel = "tiny.en"\ncompute_type = "int8"\nregions = ["eu"]\n')
    for s in (settings_for(["--config", str(config)]), settings_for([], {"STREAM_SERVER_CONFIG": str(config)})):
        (spec,) = s.providers
        assert (spec.name, spec.model, spec.compute_type, spec.regions) == ("cpu8", "tiny.en", "int8", ("eu",))
        assert s.provider_specs == s.providers
    assert settings_for([]).providers == () and [p.name for p in settings_for([]).provider_specs] == ["local"]


def test_a_bad_config_stops_the_server(tmp_path, caplog):
    config = tmp_path / "providers.toml"
    config.write_text('[[providers]]\nname = "r"\nbase_url = "http://127.0.0.1:9/v1"\n')
    assert main(["serve", "--data-dir", str(tmp_path), "--config", str(config)], env={}) == 2
    assert "at least one provider must be local" in caplog.text


def test_a_device_from_the_environment_is_checked_like_the_flag(caplog):
    """argparse checks `choices` only on the command line: STREAM_SERVER_DEVICE=gpu must stop the
    server at start, not fail later at model load."""
    assert main(["serve"], env={"STREAM_SERVER_DEVICE": "gpu"}) == 2
    assert "--device must be one of cpu, cuda, auto, not 'gpu'" in caplog.text
    assert settings_for([], {"STREAM_SERVER_DEVICE": "cuda"}).device == "cuda"


def test_the_idle_timeout_is_a_flag_with_its_environment_twin():
    assert settings_for([]).idle_timeout_s == 30.0
    assert settings_for(["--idle-timeout", "5"]).idle_timeout_s == 5.0
    assert settings_for([], {"STREAM_SERVER_IDLE_TIMEOUT": "7.5"}).idle_timeout_s == 7.5
    assert main(["serve", "--idle-timeout", "0"], env={}) == 2


BOUNDS = {
    "--max-session-events": ("max_session_events", 20_000, "50"),
    "--max-finished-sessions": ("max_finished_sessions", 100, "3"),
    "--max-messages-per-second": ("max_messages_per_s", 200.0, "50"),
    "--max-connections-per-key": ("max_connections_per_key", 32, "4"),
    "--max-connections-per-address": ("max_connections_per_address", 32, "0"),
    "--max-failed-auth": ("max_failed_auth", 10, "3"),
    "--sse-send-timeout": ("sse_send_timeout_s", 30.0, "2.5"),
    "--shutdown-drain": ("shutdown_drain_s", 15.0, "5"),
}


@pytest.mark.parametrize("flag", BOUNDS)
def test_each_bound_is_a_flag_and_a_variable_with_its_default(flag):
    attribute, default, value = BOUNDS[flag]
    variable = "STREAM_SERVER_" + flag[2:].upper().replace("-", "_")
    assert getattr(settings_for([]), attribute) == default
    assert getattr(settings_for([flag, value]), attribute) == type(default)(value)
    assert getattr(settings_for([], {variable: value}), attribute) == type(default)(value)


def test_cors_origins_are_none_unless_given():
    assert settings_for([]).cors_origins == ()
    assert settings_for(["--cors-origin", "https://a.example", "--cors-origin", "https://b.example"]).cors_origins == (
        "https://a.example",
        "https://b.example",
    )
    assert settings_for([], {"STREAM_SERVER_CORS_ORIGINS": "https://a.example"}).cors_origins == ("https://a.example",)


def test_every_serve_flag_is_in_the_readme_and_every_flag_there_exists():
    """The README's option tables are the documentation of each flag and its default."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    flags = {o for action in serve._actions for o in action.option_strings if o.startswith("--") and o != "--help"}
    documented = set(re.findall(r"`(--[a-z][a-z0-9-]+)", readme))
    assert flags - {"--no-pack-windows"} <= documented, f"undocumented: {sorted(flags - documented)}"
    assert "--idle-timeout" in flags and "--cpu-threads" in flags
    server_rows = [line for line in readme.splitlines() if line.startswith("| `--")]
    for line in server_rows:
        flag = re.match(r"\| `(--[a-z0-9-]+)", line).group(1)
        assert flag in flags, f"the README documents {flag}, which `serve` does not take"
    cpu_threads = next(line for line in server_rows if line.startswith("| `--cpu-threads`"))
    assert "every core" in cpu_threads and "--decode-slots" in cpu_threads
    assert Settings(cpu_threads=0).threads_per_slot == (os.cpu_count() or 1)


def test_every_setting_is_declared_once_with_one_flag_and_one_variable():
    """Settings declares each flag on its field; the parser takes exactly those, and a flag
    left out (with no variable) leaves the field's default."""
    declared = {field.name: flag_of(field) for field in dataclasses.fields(Settings)}
    flags = {name: flag for name, flag in declared.items() if flag is not None}
    assert {name for name, flag in declared.items() if flag is None} == {"stream_step_s", "vad_aggressiveness", "sse_keepalive_s"}
    assert len({f.name for f in flags.values()}) == len({f.variable for f in flags.values()}) == len(flags)
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    taken = {action.dest: action.option_strings for action in serve._actions if action.dest != "help"}
    assert set(taken) == set(flags)
    assert all(flag.name in taken[name] for name, flag in flags.items())
    assert all(flag.variable in serve.format_help() for flag in flags.values())
    assert settings_for([]) == Settings()


def test_the_declared_floors_are_what_the_code_needs():
    """tomllib is 3.11's; web.RequestKey first shipped in aiohttp 3.14."""
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert "aiohttp>=3.14" in project["dependencies"]
    assert "Python 3.11+" in (root / "README.md").read_text()


def test_shared_state_flags_and_their_environment_twins(tmp_path):
    default = settings_for([])
    assert (default.database_url, default.blob_dir, default.redis_url) == ("", None, "")  # embedded, zero setup
    env = {
        "STREAM_SERVER_DATABASE_URL": "postgresql://app@db.internal/speech",
        "STREAM_SERVER_BLOB_DIR": str(tmp_path / "blobs"),
        "STREAM_SERVER_REDIS_URL": "redis://cache.internal:6379/0",
    }
    s = settings_for(["--live-lease", "5"], env)
    assert (s.database_url, s.blob_dir, s.redis_url) == (env["STREAM_SERVER_DATABASE_URL"], tmp_path / "blobs", env["STREAM_SERVER_REDIS_URL"])
    assert (s.live_lease_s, s.ended_log_keep_s) == (5.0, 3600.0)


@pytest.mark.parametrize(
    "flags", [["--database-url", "mysql://x/y"], ["--redis-url", "http://cache"], ["--live-lease", "0"]]
)
def test_bad_shared_state_flags_stop_the_server(flags, tmp_path):
    assert main(["serve", "--data-dir", str(tmp_path), *flags], env={}) == 2


def test_the_lag_alarm_is_a_setting_and_zero_turns_it_off():
    assert settings_for([]).lag_alarm_s == 4.0
    assert settings_for(["--lag-alarm", "2.5"]).lag_alarm_s == 2.5
    assert settings_for([], {"STREAM_SERVER_LAG_ALARM": "0"}).lag_alarm_s == 0.0
