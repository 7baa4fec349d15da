"""Each render setting has one default and one range, and the CLI, RenderSettings and the pipeline agree."""

import pytest
from pydantic import ValidationError

from core.cli import build_parser
from core.render import DEFAULT_MODEL, REFERENCE_MODEL, RenderSettings, recommended_guidance_scale, recommended_layout_alpha
from core.settings import DEFAULT_GUIDANCE_SCALE, RENDER_SETTINGS, model_guidance_scale, model_layout_alpha


@pytest.mark.parametrize("setting", RENDER_SETTINGS, ids=lambda s: s.name)
def test_render_settings_accept_exactly_the_range(setting):
    RenderSettings(**{setting.name: setting.low})
    RenderSettings(**{setting.name: setting.high})
    step = 1 if setting.integer else 0.01
    for outside in (setting.low - step, setting.high + step):
        with pytest.raises(ValidationError):
            RenderSettings(**{setting.name: outside})
    assert RenderSettings().model_dump()[setting.name] == setting.default


@pytest.mark.parametrize("command", ["render", "eval"])
def test_cli_options_take_default_and_range_from_the_settings(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    options = {flag: action for action in sub._actions for flag in action.option_strings}
    for setting in RENDER_SETTINGS:
        if setting.flag not in options:
            assert command == "eval" and setting.flag == "--layout-alpha"  # eval's variants set it
            continue
        action = options[setting.flag]
        assert action.default == setting.default and action.help.endswith(f"; {setting.range_text()}"), (setting.flag, action.help)


def test_pipeline_check_inputs_uses_the_same_range():
    for setting in RENDER_SETTINGS[:3]:
        with pytest.raises(ValueError, match=rf"^{setting.name}: must be in \["):
            setting.check(setting.high + 1)
        setting.check(setting.high)


def test_model_defaults_come_from_the_model_index():
    assert model_guidance_scale({"default_guidance_scale": 2.5}) == 2.5
    assert model_guidance_scale({}) == DEFAULT_GUIDANCE_SCALE
    assert model_layout_alpha({"backgrounds": ["sky"]}) == 1.0 and model_layout_alpha({}) == 0.3
    assert recommended_guidance_scale(DEFAULT_MODEL) == 2.0  # model v2's own, chosen on its dev sets
    assert recommended_guidance_scale(REFERENCE_MODEL) == 2.5  # the reference layout2vid-toy's
    assert recommended_layout_alpha(DEFAULT_MODEL) == 1.0 and recommended_layout_alpha(REFERENCE_MODEL) == 1.0
