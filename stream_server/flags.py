"""How a setting is given at start-up: a `serve` flag and its STREAM_SERVER_ environment
variable, declared on the Settings field itself (`setting(...)`), so that each flag's name, type,
default, variable and help are written once. `cli` builds the parser and reads the values."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ENV_PREFIX = "STREAM_SERVER_"
FLAG = "flag"
"""The key of a field's Flag in its dataclass metadata."""
NOT_GIVEN: Any = object()
"""Neither the flag nor its variable was given: the field keeps its default."""
Kind = Literal["value", "repeat", "on", "off", "both"]
Check = Callable[[Any, str], Any]


@dataclass(frozen=True)
class Flag:
    name: str
    """`--port`."""
    help: str
    parse: Callable[[str], Any] = str
    """The flag's or the variable's text to the field's value (a ValueError: a bad value)."""
    check: Check | None = None
    """Checks a parsed value, however it came (`check(value, name)`, a ValueError naming it)."""
    env: str = ""
    """The variable after STREAM_SERVER_; empty: the flag's name (`--max-streams` -> MAX_STREAMS)."""
    kind: Kind = "value"
    """`value`; `repeat`: the flag repeated, the variable comma separated, a tuple of parsed
    items; `on` / `off`: a switch that makes the field True / False, as its variable does when
    set to 1, true, yes or on; `both`: `--x` and `--no-x`, the variable true or false."""
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def upper_name(self) -> str:
        """`--max-upload-mb` -> MAX_UPLOAD_MB."""
        return self.name.removeprefix("--").upper().replace("-", "_")

    @property
    def variable(self) -> str:
        return ENV_PREFIX + (self.env or self.upper_name)

    @property
    def help_text(self) -> str:
        listed = ", comma separated" if self.kind == "repeat" else ""
        return f"{self.help} [{self.variable}{listed}]".lstrip()

    def value(self, given: Any, env: Mapping[str, str]) -> Any:
        """The value from the command line (`given`, None when absent), else from the
        environment, else NOT_GIVEN."""
        text = env.get(self.variable)
        if self.kind in ("on", "off", "both"):
            if given is not None:
                return given
            if text is None:
                return NOT_GIVEN
            return truthy(text) != (self.kind == "off")
        if self.kind == "repeat":
            items = [item.strip() for item in (given or (text or "").split(",")) if item.strip()]
            return tuple(self._checked(item) for item in items) if items else NOT_GIVEN
        if given is None and text is None:
            return NOT_GIVEN
        return self._checked(given if given is not None else text)

    def _checked(self, text: str) -> Any:
        try:
            value = self.parse(text)
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if self.name in message else f"{self.name} ({self.variable}): bad value {text!r} ({message})") from None
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, not {value!r}")
        return self.check(value, self.name) if self.check else value


def setting(default: Any, name: str, help: str = "", *, factory: Callable[[], Any] | None = None, **flag: Any) -> Any:
    """A Settings field given by the flag `name` and its variable (the other Flag fields as keywords)."""
    metadata = {FLAG: Flag(name, help, **flag)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(field: dataclasses.Field) -> Flag | None:
    return field.metadata.get(FLAG)


def truthy(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def at_least(floor: float) -> Check:
    def check(value: Any, name: str) -> Any:
        if value < floor:
            raise ValueError(f"{name} must be at least {floor}, not {value}")
        return value

    return check


def positive(value: float, name: str) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be above 0, not {value}")
    return value


def fraction(value: float, name: str) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], not {value}")
    return value
