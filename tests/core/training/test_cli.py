"""``python -m core.training``: a bad option is one ``error:`` line and exit status 2, before
anything is loaded or written."""

import pytest

from core.training.cli import main


@pytest.mark.parametrize(("argv", "message"), [
    (["--colour-mix-max", "0.5"], "error: --colour-mix-max: must be in [0, 0.5) (got 0.5)"),
    (["--colour-mix-share", "-0.1"], "error: --colour-mix-share: must be in [0, 1] (got -0.1)"),
    (["--empty-share", "2"], "error: --empty-share: must be in [0, 1] (got 2.0)"),
    (["--latent-noise", "1.5"], "error: --latent-noise: must be in [0, 1] (got 1.5)"),
])
def test_decoder_command_rejects_bad_options_before_writing_anything(tmp_path, capsys, argv, message):
    assert main(["decoder", "--run", str(tmp_path), "--steps", "1", *argv]) == 2
    assert capsys.readouterr().err.strip() == message
    assert list(tmp_path.iterdir()) == []


def test_decoder_command_without_an_autoencoder_names_the_missing_stage(tmp_path, capsys):
    assert main(["decoder", "--run", str(tmp_path), "--steps", "1"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'vae'}: train the earlier stages first (python -m core.training toy, then decoder)"


@pytest.mark.parametrize(("argv", "message"), [
    (["--clips", "0"], "error: --clips: must be >= 1 (got 0)"),
    (["--sample-share", "1"], "error: --sample-share: must be in [0, 1) (got 1.0)"),
    (["--steps", "-5"], "error: --steps: must be >= 1 (got -5)"),
    (["--guidance-scale", "31"], "error: --guidance-scale: must be in [0, 30] (got 31.0)"),
])
def test_refine_command_rejects_bad_options_before_loading_anything(tmp_path, capsys, argv, message):
    assert main(["refine", "--run", str(tmp_path), *argv]) == 2
    assert capsys.readouterr().err.strip() == message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["graph", "--ema-decay", "1"], "error: --ema-decay: must be in [0, 1) (got 1.0)"),
    (["graph", "--oversample", "red@moon"], "error: --oversample: 'red@moon': background must be one of sky, grass, desert, night, ocean, snow"),
    (["graph", "--oversample-weight", "0"], "error: --oversample-weight: must be >= 1 (got 0.0)"),
    (["export", "--guidance-scale", "40"], "error: --guidance-scale: must be in [0, 30] (got 40.0)"),
    (["export", "--guidance-interval", "0.8", "0.2"], "error: --guidance-interval: must be START END with 0 <= START <= END <= 1 (got (0.8, 0.2))"),
])
def test_graph_and_export_commands_reject_bad_options_before_reading_the_run(tmp_path, capsys, argv, message):
    assert main([argv[0], "--run", str(tmp_path), *argv[1:]]) == 2
    assert capsys.readouterr().err.strip() == message
    assert list(tmp_path.iterdir()) == []


def test_a_run_without_its_files_is_one_error_line(tmp_path, capsys):
    assert main(["graph", "--run", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'config.json'}: no such file"
