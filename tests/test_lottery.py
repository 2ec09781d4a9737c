"""find_ticket: iterative magnitude pruning with rewinding, on every backend.

A tiny MLP on 512 of scikit-learn's 8x8 digits, batch 64 (8 steps an
epoch): each search takes a few seconds. The weights a round starts from
and its optimizer's learning rate are observed with a Keras callback
(`on_train_begin`), the way a user would.
"""

import os
import re

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.wrapper import PruneLowMagnitude
from keras_prune.datasets import load_digits

from tests.conftest import numpy

N = 512
BATCH = 64
STEPS = N // BATCH  # per epoch
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def build():
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(24, activation="relu"), keras.layers.Dense(10),
    ])


def schedule():
    return keras.optimizers.schedules.ExponentialDecay(0.01, STEPS, 0.5)


@pytest.fixture(scope="module")
def data():
    (x, y), (xt, yt) = load_digits()
    return (x[:N], y[:N]), (xt, yt)


class Starts(keras.callbacks.Callback):
    """Each round's starting weights (per Dense, [kernel, bias]), its
    masks, the optimizer's iterations and learning rate at the start;
    with `record_step`, round 0's weights after that many steps."""

    def __init__(self, record_step=None):
        super().__init__()
        self.rounds = []
        self.record_step = record_step
        self.recorded = None
        self.seen = 0

    def on_train_begin(self, logs=None):
        model = self.model
        weights, masks = [], []
        for layer in model.layers:
            inner = layer.layer if isinstance(layer, PruneLowMagnitude) else (
                layer)
            if inner.weights:
                weights.append([numpy(v) for v in inner.weights])
                masks.append(numpy(layer.masks[0]).astype(bool)
                             if isinstance(layer, PruneLowMagnitude) else None)
        optimizer = model.optimizer
        self.rounds.append({
            "weights": weights, "masks": masks,
            "iterations": int(numpy(optimizer.iterations)),
            "lr": float(numpy(optimizer.learning_rate)),
        })
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if len(self.rounds) == 1 and self.seen == self.record_step:
            self.recorded = [[numpy(v) for v in layer.layer.weights]
                             for layer in self.model.layers
                             if isinstance(layer, PruneLowMagnitude)]


def search(data, **kwargs):
    train, val = data
    settings = dict(rounds=2, epochs=1, batch_size=BATCH, loss=LOSS,
                    learning_rate=schedule(), verbose=0, seed=3)
    settings.update(kwargs)
    return keras_prune.find_ticket(
        settings.pop("model", build), train, val, **settings)


def _user_model():
    keras.utils.set_random_seed(11)
    return build()


def test_rewind_init_resets_survivors_to_initial_weights(data):
    model = _user_model()
    theta_0 = [numpy(w) for w in model.weights]
    starts = Starts()
    result = search(data, model=model, rewind="init", callbacks=[starts],
                    output_rate=0.1)
    for old, new in zip(theta_0, model.weights):
        np.testing.assert_array_equal(old, numpy(new))
    for index in (1, 2):
        start = starts.rounds[index]
        masks = list(result.rounds[index].masks.values())
        for (kernel, bias), mask, k0, b0 in zip(
                start["weights"], masks, theta_0[0::2], theta_0[1::2]):
            np.testing.assert_array_equal(kernel[mask], k0[mask])
            assert not kernel[~mask].any()
            np.testing.assert_array_equal(bias, b0)
        assert start["iterations"] == 0
        assert start["lr"] == pytest.approx(0.01)
    # Layer-wise counts: hidden at 20 %, output at 10 % a round.
    for r in result.rounds:
        (hidden, h_total), (out, o_total) = r.layers.values()
        assert h_total - hidden == round(h_total * (1 - 0.8 ** r.index))
        assert o_total - out == round(o_total * (1 - 0.9 ** r.index))
        assert r.kept == hidden + out
    # The masks only shrink.
    for before, after in zip(result.rounds, result.rounds[1:]):
        for m0, m1 in zip(before.masks.values(), after.masks.values()):
            assert not (m1 & ~m0).any()


def test_user_model_is_not_modified(data):
    model = _user_model()
    before = [numpy(w).copy() for w in model.weights]
    search(data, model=model, rounds=1)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, numpy(new))


def test_rewind_to_step_k_uses_the_recorded_weights(data):
    k = 3
    starts = Starts(record_step=k)
    result = search(data, rewind=k, callbacks=[starts], rounds=1)
    start = starts.rounds[1]
    mask = list(result.rounds[1].masks.values())
    for (kernel, bias), recorded, keep in zip(
            start["weights"], starts.recorded, mask):
        np.testing.assert_array_equal(kernel[keep], recorded[0][keep])
        assert not kernel[~keep].any()
        np.testing.assert_array_equal(bias, recorded[1])
    # The learning rate is rewound to step k with the weights.
    assert start["iterations"] == 0
    assert start["lr"] == pytest.approx(float(numpy(schedule()(k))))


def test_lr_rewinding_restarts_the_schedule(data):
    starts = Starts()
    result = search(data, rewind="lr", callbacks=[starts], rounds=1,
                    keep_weights=True, scope="global")
    start = starts.rounds[1]
    assert start["iterations"] == 0
    assert start["lr"] == pytest.approx(0.01)
    # The trained weights, masked: not a reset.
    trained = result.rounds[0].weights
    keep = list(result.rounds[1].masks.values())
    for (kernel, bias), (name, (k0, b0)), m in zip(
            start["weights"], trained.items(), keep):
        np.testing.assert_array_equal(kernel, np.where(m, k0, 0))
        np.testing.assert_array_equal(bias, b0)
    # Global: one count over all the weights.
    r = result.rounds[1]
    assert r.total - r.kept == round(r.total * 0.2)


def test_finetuning_continues_at_the_final_learning_rate(data):
    starts = Starts()
    result = search(data, rewind="finetune", callbacks=[starts], rounds=1)
    steps = result.rounds[0].steps
    assert steps == STEPS
    final = float(numpy(schedule()(steps)))
    assert starts.rounds[1]["lr"] == pytest.approx(final)
    assert result.rounds[1].learning_rate_start == pytest.approx(final)
    assert final < 0.01 * 0.6


def test_remaining_fraction_is_0_8_to_the_n_in_counts(data):
    result = search(data, rounds=4, scope="global", rewind="lr")
    for r in result.rounds:
        assert r.total - r.kept == round(r.total * (1 - 0.8 ** r.index))
        assert r.remaining == pytest.approx(0.8 ** r.index, abs=1 / r.total)


@pytest.fixture(scope="module")
def ticket(data):
    keras.utils.set_random_seed(0)
    return search(data, rewind="init")


def test_random_mask_control_keeps_per_layer_sparsity(data, ticket):
    control = search(data, control="random_mask", ticket=ticket)
    assert control.label == "control=random_mask"
    for mine, theirs in zip(control.rounds, ticket.rounds):
        assert list(mine.layers.values()) == list(theirs.layers.values())
    for mine, theirs in zip(control.rounds[1:], ticket.rounds[1:]):
        assert any(not np.array_equal(a, b) for a, b in zip(
            mine.masks.values(), theirs.masks.values()))
    assert control.rounds[0].metrics == ticket.rounds[0].metrics


def test_reinit_control_keeps_the_masks_and_changes_the_values(data,
                                                                 ticket):
    starts = Starts()
    control = search(data, control="reinit", ticket=ticket,
                     callbacks=[starts])
    keras.utils.set_random_seed(3)
    theta_0 = [numpy(w) for w in build().weights]
    # Round 0 is the ticket's (not trained again): starts[0] is round 1.
    for start, mine, theirs in zip(starts.rounds, control.rounds[1:],
                                   ticket.rounds[1:]):
        for a, b in zip(mine.masks.values(), theirs.masks.values()):
            np.testing.assert_array_equal(a, b)
        for (kernel, _), keep, k0 in zip(start["weights"],
                                         mine.masks.values(), theta_0[0::2]):
            assert not kernel[~keep].any()
            assert not np.allclose(kernel[keep], k0[keep])


def test_interrupted_search_resumes_to_the_same_result(data, tmp_path):
    whole = search(data, rounds=3, rewind="lr", keep_weights=True)
    directory = str(tmp_path / "search")
    search(data, rounds=2, rewind="lr", directory=directory)
    assert sorted(os.listdir(directory)) == [
        "initial.npz", "round_000.json", "round_000.npz", "round_001.json",
        "round_001.npz", "round_002.json", "round_002.npz", "search.json"]
    # Killed while saving round 2: its weights written, not its record
    # (written last), so round 2 is not finished and runs again.
    os.remove(os.path.join(directory, "round_002.json"))
    resumed = search(data, rounds=3, rewind="lr", directory=directory,
                     keep_weights=True)
    assert len(resumed.rounds) == 4
    for a, b in zip(whole.rounds, resumed.rounds):
        assert a.kept == b.kept
        assert list(a.layers.values()) == list(b.layers.values())
        for m, n in zip(a.masks.values(), b.masks.values()):
            np.testing.assert_array_equal(m, n)
        # Each round is seeded (seed + round) and CPU fit is deterministic
        # on all three backends: the resumed rounds are bit-identical.
        assert b.metrics == a.metrics
        for ws, vs in zip(a.weights.values(), b.weights.values()):
            for w, v in zip(ws, vs):
                np.testing.assert_array_equal(w, v)


def test_a_directory_of_another_search_is_refused(data, tmp_path):
    directory = str(tmp_path / "search")
    search(data, rounds=1, directory=directory)
    with pytest.raises(ValueError, match="holds another search .*rate: 0.2 "
                       "there, 0.3 now"):
        search(data, rounds=1, rate=0.3, directory=directory)


def test_json_round_trip_table_and_plot(data, ticket, tmp_path):
    path = tmp_path / "ticket.json"
    text = ticket.to_json(path)
    again = keras_prune.LotteryResult.from_json(str(path))
    assert again.to_json() == text
    assert str(again) == str(ticket)
    for a, b in zip(ticket.rounds, again.rounds):
        for m, n in zip(a.masks.values(), b.masks.values()):
            np.testing.assert_array_equal(m, n)
    lines = str(ticket).splitlines()
    assert lines[0] == "LotteryResult rewind=init"
    assert "64.0" in lines[-1] and "accuracy" in lines[1]
    image = tmp_path / "lottery.png"
    assert ticket.plot(str(image), [again]) == str(image)
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    umask = os.umask(0)
    os.umask(umask)
    for written in (image, path):  # as open() would make them
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_ticket_strips_saves_and_loads(data, ticket, tmp_path):
    x = data[1][0][:32]
    pruned = ticket.ticket
    stripped = keras_prune.strip_pruning(pruned)
    path = str(tmp_path / "ticket.keras")
    stripped.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(numpy(loaded(x)), numpy(pruned(x)),
                               rtol=1e-6, atol=1e-6)
    kernels = [numpy(l.kernel) for l in loaded.layers if l.weights]
    zeros = sum(int((k == 0).sum()) for k in kernels)
    assert zeros == ticket.rounds[-1].total - ticket.rounds[-1].kept


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 0.0}, "find_ticket: rate must be in (0, 1), got 0.0; it is "
     "the fraction of the surviving weights pruned each round (0.2 prunes "
     "a fifth)."),
    ({"rate": 1.0}, "find_ticket: rate must be in (0, 1), got 1.0;"),
    ({"rewind": 17}, "find_ticket: rewind step 17 is beyond the training "
     "length (8 optimizer steps: epochs x steps per epoch); give a step in "
     "0..8."),
    ({"rewind": "start"}, "find_ticket: rewind 'start' is unknown; use "
     "'init', 'lr', 'finetune' or an int step k."),
    ({"rounds": 0}, "find_ticket: rounds must be an int >= 1 (the number "
     "of pruning rounds), got 0."),
    ({"control": "reinit"}, "find_ticket: control='reinit' reuses a "
     "search's masks: pass ticket=<the LotteryResult of find_ticket>"),
])
def test_bad_input_is_refused_before_training(data, kwargs, message):
    starts = Starts()
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        search(data, callbacks=[starts], **kwargs)
    assert starts.rounds == []


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // BATCH

    def __getitem__(self, i):
        part = slice(i * BATCH, (i + 1) * BATCH)
        return self.x[part], self.y[part]


def test_a_dataset_trains_and_rewinds_by_its_length(data):
    (x, y), val = data
    starts = Starts(record_step=5)
    result = keras_prune.find_ticket(
        build, Batches(x, y), val, rounds=1, rewind=5, epochs=1, loss=LOSS,
        verbose=0, callbacks=[starts])
    assert result.rounds[0].steps == STEPS
    keep = list(result.rounds[1].masks.values())
    for (kernel, _), recorded, m in zip(starts.rounds[1]["weights"],
                                        starts.recorded, keep):
        np.testing.assert_array_equal(kernel[m], recorded[0][m])
    with pytest.raises(ValueError, match=re.escape(
            "rewind step 9 is beyond the training length (8 optimizer "
            "steps")):
        keras_prune.find_ticket(build, Batches(x, y), val, rounds=1,
                                rewind=9, loss=LOSS)


def test_progress_is_one_plain_line_per_round(data, capsys):
    search(data, rounds=2, verbose=1)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert re.fullmatch(
            rf"round {i}/2: \d+\.\d\d % of weights remaining, accuracy "
            r"0\.\d{4}, loss \d+\.\d{4} \(\d+\.\d s\)", line), line
    assert lines[2].startswith("round 2/2: 64.0")
    assert "\r" not in out and "\x1b" not in out
    search(data, rounds=1, verbose=0)
    assert capsys.readouterr().out == ""
