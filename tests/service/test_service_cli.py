"""`python -m service` flags: their help states ServiceSettings' defaults, not its own copies."""

from __future__ import annotations

from service.__main__ import build_parser
from service.settings import ServiceSettings


def test_help_shows_the_settings_defaults() -> None:
    helps = {a.option_strings[0]: a.help for a in build_parser()._actions if a.option_strings}
    fields = ServiceSettings.model_fields
    assert f"default {fields['port'].default})" in helps["--port"] and "H2H_PORT" in helps["--port"]
    assert f"default {fields['host'].default})" in helps["--host"]
    assert f"default {fields['provider'].default})" in helps["--provider"]
    assert str(fields["model_repository"].default) in helps["--model-repository"]
    choices = {a.option_strings[0]: a.choices for a in build_parser()._actions if a.option_strings}
    assert list(choices["--provider"]) == ["auto", "cuda", "cpu"]
