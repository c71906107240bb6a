"""The providers file: what it declares, and what it refuses with a message naming the problem."""

import pytest

from stream_server.routing.providers import (
    LOCAL,
    REMOTE,
    ConfigError,
    ProviderSpec,
    is_quantized,
    load_providers,
    parse_providers,
)
from stream_server.settings import Settings

TWO_BACKENDS = """
[[providers]]
name = "fast"
model = "tiny.en"
compute_type = "int8"
price_per_minute = 0.001

[[providers]]
name = "upstream"
base_url = "http://127.0.0.1:9000/v1/"
api_key = "sk-test"
model = "whisper-1"
regions = ["EU"]
price_per_minute = 0.006
timeout_s = 30
"""


def test_a_local_and_a_remote_provider(tmp_path):
    path = tmp_path / "providers.toml"
    path.write_text(TWO_BACKENDS)
    fast, upstream = load_providers(path)
    assert fast == ProviderSpec(
        name="fast", kind=LOCAL, model="tiny.en", compute_type="int8", price_per_minute=0.001
    )
    assert fast.is_local and fast.quantized is None  # derived from the loaded model
    assert (upstream.kind, upstream.base_url, upstream.api_key, upstream.model) == (
        REMOTE, "http://127.0.0.1:9000/v1", "sk-test", "whisper-1"
    )
    assert (upstream.regions, upstream.quantized, upstream.price_per_minute, upstream.timeout_s) == (("eu",), False, 0.006, 30.0)


def test_without_a_config_one_local_backend_serves_the_model():
    settings = Settings(model="base", device="cpu", compute_type="float32")
    (spec,) = settings.provider_specs
    assert (spec.name, spec.kind, spec.model, spec.device, spec.compute_type) == ("local", LOCAL, "base", "cpu", "float32")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("", "declares no providers"),
        ('[[providers]]\nname = "r"\nbase_url = "http://127.0.0.1:1/v1"', "at least one provider must be local"),
        ('[[providers]]\nname = "a"\nmodel = "tiny.en"\n[[providers]]\nname = "a"\nmodel = "base"', "repeated: a"),
        ('[[providers]]\nmodel = "tiny.en"', "`name` is required"),
        ('[[providers]]\nname = "a"', "needs `model`"),
        ('[[providers]]\nname = "a"\nmodel = "tiny.en"\nmodle = "x"', "unknown keys modle"),
        ('[[providers]]\nname = "a"\nmodel = "tiny.en"\nquantized = true', "derives quantized from compute_type"),
        ('[[providers]]\nname = "a"\nmodel = "tiny.en"\nprice_per_minute = -1', "price_per_minute"),
        ('[[providers]]\nname = "a"\nmodel = "tiny.en"\nregions = "eu"', "`regions` must be a list"),
        ('[[providers]]\nname = "a"\nmodel = "tiny.en"\n[[providers]]\nname = "r"\nbase_url = "ftp://x"', "http(s) URL"),
        ('[[providers]]\nname = "a"\nmodel = "tiny.en"\n[[providers]]\nname = "r"\nbase_url = "http://127.0.0.1:1"\ncompute_type = "int8"', "for local providers"),
    ],
)
def test_impossible_configs_are_refused(toml, message):
    import tomllib

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_providers(tomllib.loads(toml))


def test_a_file_that_is_not_toml_is_a_config_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[[providers]\nname = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_providers(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_providers(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("compute_type", "quantized"),
    [("int8", True), ("int8_float16", True), ("int8_float32", True), ("float32", False), ("float16", False), ("bfloat16", False)],
)
def test_quantized_is_derived_from_the_compute_type(compute_type, quantized):
    assert is_quantized(compute_type) is quantized
