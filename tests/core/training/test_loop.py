"""The one training loop: its schedule, resuming, clipping, EMA and log."""

import csv

import numpy as np
import pytest
import torch

from core.training.loop import CosineSchedule, StepLoss, TrainingLoop, TrainingState


def test_schedule_warms_up_linearly_then_falls_to_the_floor():
    schedule = CosineSchedule(10, warmup=4, floor=0.1)
    cosine = [0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / 10)) for s in range(3)]
    assert [schedule.lr(2.0, s) for s in range(3)] == pytest.approx([2.0 * w * c for w, c in zip((0.25, 0.5, 0.75), cosine)])
    assert schedule.lr(2.0, 10) == pytest.approx(0.2)
    assert [CosineSchedule(8, warmup=2, floor=1.0).lr(1e-3, s) for s in (0, 1, 7)] == [5e-4, 1e-3, 1e-3]  # constant after the warm-up


def _toy_problem(seed: int = 0):
    """A linear model, its AdamW optimizer, and a generator + numpy rng that draw its batches."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    state = TrainingState({"model": model}, optimizer, generator=torch.Generator().manual_seed(1), rng=np.random.default_rng(2))

    def batch_loss(step):
        x = torch.randn(4, 3, generator=state.generator)
        y = torch.from_numpy(state.rng.normal(size=(4, 1))).float()
        loss = ((model(x) - y) ** 2).mean()
        return StepLoss(loss, {"half": loss.detach() / 2})

    return model, state, batch_loss


def _loop(state, model, path, **kwargs):
    return TrainingLoop("toy", state, list(model.parameters()), CosineSchedule(6, warmup=2, floor=0.1), checkpoint=path / "ckpt.pt",
                        checkpoint_every=2, log=path / "loss.csv", **kwargs)


def _stopped_at(stop: int, batch_loss):
    """``batch_loss`` that raises KeyboardInterrupt (a user's Ctrl-C) when asked for step ``stop``."""

    def interrupted(step):
        if step == stop:
            raise KeyboardInterrupt
        return batch_loss(step)

    return interrupted


def test_an_interrupted_run_resumes_to_the_same_weights_and_losses(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    model, state, batch_loss = _toy_problem()
    straight = _loop(state, model, tmp_path / "a").run(batch_loss)

    model, state, batch_loss = _toy_problem()
    with pytest.raises(KeyboardInterrupt):
        _loop(state, model, tmp_path / "b").run(_stopped_at(3, batch_loss))
    model, state, batch_loss = _toy_problem(seed=5)  # fresh weights: all of them come from the checkpoint
    loop = _loop(state, model, tmp_path / "b")
    assert loop.resume() and loop.step == 2
    resumed = loop.run(batch_loss)
    assert resumed == straight[2:]
    assert torch.equal(model.weight, torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)["model"]["weight"])
    assert not list(tmp_path.glob("*/*.tmp"))


def test_the_log_appends_a_row_per_step_with_the_loss_terms(tmp_path):
    model, state, batch_loss = _toy_problem()
    losses = _loop(state, model, tmp_path).run(batch_loss)
    with open(tmp_path / "loss.csv") as handle:
        rows = list(csv.reader(handle))
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert [float(r[1]) for r in rows] == pytest.approx(losses, abs=1e-5)
    assert [float(r[2]) for r in rows] == pytest.approx([v / 2 for v in losses], abs=1e-5)


def test_a_finished_run_trains_nothing_more(tmp_path):
    model, state, batch_loss = _toy_problem()
    _loop(state, model, tmp_path).run(batch_loss)
    model, state, batch_loss = _toy_problem()
    loop = _loop(state, model, tmp_path)
    loop.resume()
    assert loop.finished and loop.run(batch_loss) == []


def test_gradients_are_clipped_to_the_given_norm():
    model = torch.nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]
    state = TrainingState({"model": model}, torch.optim.SGD(model.parameters(), lr=1.0))
    loop = TrainingLoop("clip", state, list(model.parameters()), CosineSchedule(1, floor=1.0), clip_grad_norm=0.5, progress={"disable": True})
    loop.run(lambda step: 1e6 * model(torch.ones(1, 3)).sum())
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert moved.norm() == pytest.approx(0.5)


def test_the_moving_average_is_checkpointed_and_resumed(tmp_path, capsys):
    model, state, batch_loss = _toy_problem()
    _loop(state, model, tmp_path, ema_decay=0.5).run(batch_loss)
    assert "toy stage: EMA (decay 0.5) starts from the weights at step 0" in capsys.readouterr().out
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=False)["ema"]
    assert saved["optimization_step"] == 6 and len(saved["shadow_params"]) == 2
    model, state, batch_loss = _toy_problem()
    loop = TrainingLoop("toy", state, list(model.parameters()), CosineSchedule(8), checkpoint=tmp_path / "ckpt.pt", ema_decay=0.5)
    loop.resume()
    loop.run(batch_loss)
    assert "starts from" not in capsys.readouterr().out  # resumed, not restarted
    assert torch.load(tmp_path / "ckpt.pt", weights_only=False)["ema"]["optimization_step"] == 8


def test_a_time_limit_stops_after_a_checkpoint_and_the_same_call_resumes_to_the_same_weights(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    model, state, batch_loss = _toy_problem()
    straight = _loop(state, model, tmp_path / "a").run(batch_loss)
    weights = model.weight.detach().clone()

    model, state, batch_loss = _toy_problem()
    chunk = _loop(state, model, tmp_path / "b", time_limit_s=0.0).run(batch_loss)  # every step is past the limit
    assert len(chunk) == 1 and state.step == 1
    assert torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)["step"] == 1  # saved although 1 is not a checkpoint step
    model, state, batch_loss = _toy_problem()
    loop = _loop(state, model, tmp_path / "b")
    assert loop.resume() and not loop.finished
    rest = loop.run(batch_loss)
    assert chunk + rest == pytest.approx(straight)
    assert torch.equal(model.weight, weights)


def _adversarial_problem(seed: int = 0):
    """A model and a critic the stage steps itself (its optimizer an aux optimizer), as a discriminator is."""
    torch.manual_seed(seed)
    model, critic = torch.nn.Linear(3, 1), torch.nn.Linear(1, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    critic_optimizer = torch.optim.AdamW(critic.parameters(), lr=0.05)
    state = TrainingState(
        {"model": model, "critic": critic}, optimizer, generator=torch.Generator().manual_seed(1), aux_optimizers={"critic": critic_optimizer},
    )

    def batch_loss(step):
        x = torch.randn(4, 3, generator=state.generator)
        critic_optimizer.zero_grad()
        ((critic(model(x).detach()) - 1.0) ** 2).mean().backward()
        critic_optimizer.step()
        return StepLoss(critic(model(x)).pow(2).mean())

    return model, critic, state, batch_loss


def test_a_stage_stepping_its_own_optimizer_resumes_it_from_the_checkpoint(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    model, critic, state, batch_loss = _adversarial_problem()
    straight = _loop(state, model, tmp_path / "a").run(batch_loss)
    model, critic, state, batch_loss = _adversarial_problem()
    with pytest.raises(KeyboardInterrupt):
        _loop(state, model, tmp_path / "b").run(_stopped_at(3, batch_loss))
    model, critic, state, batch_loss = _adversarial_problem(seed=5)
    loop = _loop(state, model, tmp_path / "b")
    assert loop.resume() and loop.step == 2
    assert state.aux_optimizers["critic"].state_dict()["state"]  # Adam's moments came back
    assert loop.run(batch_loss) == straight[2:]
    assert torch.equal(critic.weight, torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)["critic"]["weight"])
