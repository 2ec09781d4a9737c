"""Iterative magnitude pruning with rewinding: `find_ticket`.

Rounds of train -> prune a fraction of the surviving weights by magnitude ->
reset the survivors -> train again (Frankle & Carbin 2019, "The Lottery
Ticket Hypothesis"). The reset is the user's choice: back to the initial
weights, to those of an early step of the first run (weight rewinding,
Frankle et al. 2020), or keep the trained weights and replay the learning
rate schedule (Renda et al. 2020) or continue at its final value
(fine-tuning). Two controls reuse a search's masks: the same structure
randomly re-initialized, and random masks of the same per-layer sparsity.

Each round trains a copy pruned with `FixedMasks` (masks held in the
forward pass, `w * mask` baked after training) with a new optimizer, so
nothing of the previous round's optimizer state carries over.
"""

import math
import numbers
import sys
import time

import keras

from keras_prune.analysis.tickets import LotteryResult
from keras_prune.analysis.tickets import TicketRound
from keras_prune.core.layers import pruned_layers
from keras_prune.core.schedules import FixedMasks
from keras_prune.core.walk import is_graph_model
from keras_prune.methods import ticket_state as state_io
from keras_prune.methods.gradual import prune_low_magnitude

REWINDS = ("init", "lr", "finetune")
CONTROLS = ("reinit", "random_mask")


@keras.saving.register_keras_serializable(package="keras_prune")
class RewoundSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` replayed from step `offset`: `schedule(step + offset)`.

    Weight rewinding to step k also rewinds the learning rate to step k.

    Args:
        schedule: a `LearningRateSchedule`.
        offset: the step the replay starts from.
    """

    def __init__(self, schedule, offset):
        self.schedule = schedule
        self.offset = int(offset)

    def __call__(self, step):
        return self.schedule(step + self.offset)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "offset": self.offset}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["schedule"]),
                   config["offset"])


def find_ticket(
    model, data, validation_data, *, rounds=None, rate=0.2,
    output_rate=None, scope="layer", rewind="init", control=None,
    ticket=None, epochs=1, batch_size=32, steps_per_epoch=None,
    optimizer="adam", learning_rate=None,
    loss="sparse_categorical_crossentropy", metrics=("accuracy",), seed=0,
    directory=None, keep_weights=False, callbacks=(), verbose=1, label=None,
):
    """Iterative magnitude pruning with rewinding (lottery tickets).

    Round 0 trains the dense model. Each following round prunes `rate` of
    the weights that survived (the smallest |w|), resets the survivors as
    `rewind` says and trains again with the same recipe and a new
    optimizer. After n rounds `0.8 ** n` of the prunable weights remain
    (rate 0.2), exact in counts: each weight (or, with `scope="global"`,
    all of them together) keeps `size - round(size * (1 - 0.8 ** n))`.

    Args:
        model: a built Functional or Sequential model (copied, never
            modified; its weights are the initial ones, theta_0), or a
            function returning a new one (called once, seeded).
        data: training data, `(x, y)` arrays or a dataset of batches
            (`tf.data.Dataset`, `keras.utils.PyDataset`).
        validation_data: `(x, y)` or a dataset, evaluated after each round.
        rounds: the number of pruning rounds (>= 1). For a control:
            default, as many as `ticket` has.
        rate: fraction in (0, 1) of the surviving weights pruned per round.
        output_rate: the output layer's (the last prunable one's) rate, in
            [0, 1) (0: not pruned); default `rate`. Frankle & Carbin prune
            LeNet's output layer at 0.1.
        scope: "layer" (each weight at its rate, the paper's) or "global"
            (one magnitude threshold over all weights at the same rate).
        rewind: what the survivors start the next round from: "init"
            (theta_0), an int k (their values after k optimizer steps of
            round 0, recorded during it; the learning-rate schedule is
            replayed from step k too), "lr" (the trained weights, the
            schedule from step 0) or "finetune" (the trained weights, a
            constant learning rate: the schedule's final value).
        control: None, "reinit" (the masks of `ticket`, the survivors
            freshly initialized each round) or "random_mask" (random masks
            with each weight's kept count of `ticket`'s, from theta_0).
        ticket: the `LotteryResult` (with masks) whose rounds a control
            reuses.
        epochs, batch_size, steps_per_epoch: each round's training, as in
            `fit` (`steps_per_epoch` is needed for a dataset without a
            length when `rewind` is a step).
        optimizer: an optimizer name, a `keras.optimizers.Optimizer` (a
            template: each round gets a new one from its config) or a
            function `fn(learning_rate) -> Optimizer`.
        learning_rate: a float or `LearningRateSchedule`; default: the
            template's, or 1e-3.
        loss, metrics: as in `compile`.
        seed: seeds every round (`keras.utils.set_random_seed(seed + r)`),
            so a resumed search gives the same rounds.
        directory: where each finished round is saved; a search given the
            directory of an interrupted one continues after its last
            finished round.
        keep_weights: also keep each round's trained weights.
        callbacks: Keras callbacks passed to every round's `fit`.
        verbose: 1 prints one line per round, 0 nothing.
        label: the result's label; default from `rewind` / `control`.

    Returns:
        A `LotteryResult`: one `TicketRound` per round, and `.ticket`, the
        last round's trained model with its masks held (`FixedMasks`;
        `strip_pruning` it to ship).

    Raises:
        ValueError: for a bad argument, before any training.

    Example:

    ```python
    import keras
    import keras_prune
    from keras_prune.datasets import load_digits

    (x, y), (x_val, y_val) = load_digits()
    build = lambda: keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax")])
    result = keras_prune.find_ticket(build, (x, y), (x_val, y_val),
                                     rounds=2, rewind="init", epochs=1)
    print(result)
    result.plot("lottery.png")
    final = keras_prune.strip_pruning(result.ticket)
    ```
    """
    rounds = _check_rounds(rounds, control, ticket)
    _check_rate("rate", rate, allow_zero=False)
    if output_rate is not None:
        _check_rate("output_rate", output_rate, allow_zero=True)
    if scope not in ("layer", "global"):
        raise ValueError(
            f"find_ticket: scope {scope!r} is not 'layer' or 'global'.")
    if control is not None and rewind != "init":
        raise ValueError(
            f"find_ticket: control={control!r} trains each round from a "
            f"(re-)initialization, so rewind={rewind!r} does not apply; "
            "leave rewind='init'.")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"find_ticket: epochs must be an int >= 1, got {epochs!r}.")
    per_epoch = _steps_per_epoch(data, batch_size, steps_per_epoch)
    _check_rewind(rewind, None if per_epoch is None else per_epoch * epochs)
    make_optimizer, schedule = _optimizer_factory(optimizer, learning_rate)
    dense = _dense_copy(model, seed)
    settings = {
        "rounds": rounds, "rate": rate, "output_rate": output_rate,
        "scope": scope, "rewind": rewind, "control": control,
        "epochs": epochs, "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch, "seed": seed,
        "optimizer": _describe(optimizer),
        "learning_rate": _describe(schedule), "loss": _describe(loss),
        "metrics": [_describe(m) for m in metrics],
    }
    label = label or (f"control={control}" if control else (
        f"rewind={rewind}" if isinstance(rewind, str) else
        f"rewind to step {rewind}"))
    search = _Search(dense, data, validation_data, settings, make_optimizer,
                     schedule, loss, list(metrics), list(callbacks), ticket,
                     keep_weights, verbose)
    return search.run(directory, label)


class _Search:
    def __init__(self, dense, data, validation_data, settings,
                 make_optimizer, schedule, loss, metrics, callbacks, ticket,
                 keep_weights, verbose):
        self.dense = dense
        self.loss = loss
        self.data = data
        self.validation_data = validation_data
        self.s = settings
        self.make_optimizer = make_optimizer
        self.schedule = schedule
        self.metrics = metrics
        self.callbacks = callbacks
        self.ticket = ticket
        self.keep_weights = keep_weights
        self.verbose = verbose
        self.theta_0 = state_io.get_state(dense)
        self.theta_k = None
        self.final_lr = None
        if ticket is not None:
            self.ticket_masks = _translated(ticket, self._pruned(None))

    def run(self, directory, label):
        records, model, masks = [], None, None
        if directory is not None:
            state_io.open_directory(directory, self.s)
            layout = self._pruned(None)
            saved = state_io.load_start(directory, "initial", layout)
            if saved is None:
                state_io.save_start(directory, "initial", self.theta_0)
            else:
                self.theta_0 = saved
                state_io.set_state(self.dense, saved)
            done = state_io.finished_rounds(directory)[: self.s["rounds"] + 1]
            if done:
                self.theta_k = state_io.load_start(directory, "rewind_point",
                                                   layout)
                self.final_lr = done[0][1]["final_learning_rate"]
                records = [r for r, _ in done]
                trained, masks = state_io.load_round(directory, len(done) - 1,
                                                     layout)
                state_io.set_state(self.dense, trained)
                model = self._pruned(masks)
                for r in records:
                    weights, r.masks = state_io.load_round(
                        directory, r.index, layout)
                    r.layers = dict(zip(r.masks, r.layers.values()))
                    if self.keep_weights:
                        r.weights = weights
        for index in range(len(records), self.s["rounds"] + 1):
            model, masks, record = self._round(index, model, masks)
            records.append(record)
            if directory is not None:
                if index == 0 and self.theta_k is not None:
                    state_io.save_start(directory, "rewind_point",
                                        self.theta_k)
                state_io.save_round(
                    directory, record, state_io.get_state(self.dense), masks,
                    {"final_learning_rate": self.final_lr})
            if self.verbose:
                self._report(record)
        return LotteryResult(label, self.s, records, ticket=model)

    # ---- one round -------------------------------------------------------

    def _round(self, index, previous, masks):
        control, rewind = self.s["control"], self.s["rewind"]
        if index == 0 and control is not None:
            return self._copied_dense_round()
        start = time.perf_counter()
        keras.utils.set_random_seed(self.s["seed"] + index)
        if index > 0:
            masks = self._next_masks(index, previous, masks)
            self._reset(index)
        model = self._pruned(masks)
        prune_seconds = time.perf_counter() - start
        start = time.perf_counter()
        learning_rate = self.schedule
        if index > 0 and rewind == "finetune":
            learning_rate = self.final_lr
        elif index > 0 and not isinstance(rewind, str) and rewind > 0:
            learning_rate = (RewoundSchedule(self.schedule, rewind)
                             if _is_schedule(self.schedule) else self.schedule)
        optimizer = self.make_optimizer(learning_rate)
        model.compile(optimizer=optimizer, loss=self.loss,
                      metrics=self.metrics)
        lr_start = _float(optimizer.learning_rate)
        callbacks = list(self.callbacks)
        recorder = None
        if index == 0 and not isinstance(rewind, str):
            recorder = _RecordAt(rewind)
            callbacks.append(recorder)
        x, y = _split(self.data)
        model.fit(x, y, batch_size=self.s["batch_size"] if y is not None
                  else None, epochs=self.s["epochs"],
                  steps_per_epoch=self.s["steps_per_epoch"], verbose=0,
                  callbacks=callbacks)
        for wrapper in pruned_layers(model):
            wrapper.bake()
        steps = int(_float(optimizer.iterations))
        if index == 0:
            self.final_lr = _float(optimizer.learning_rate)
            if recorder is not None:
                self.theta_k = recorder.state
        xv, yv = _split(self.validation_data)
        scores = model.evaluate(xv, yv, batch_size=self.s["batch_size"] if
                                yv is not None else None, verbose=0,
                                return_dict=True)
        train_seconds = time.perf_counter() - start
        trained = state_io.get_state(model)
        state_io.set_state(self.dense, trained)
        masks = state_io.get_masks(model)
        record = _record(index, masks, scores, lr_start, steps,
                         train_seconds, prune_seconds)
        if self.keep_weights:
            record.weights = trained
        return model, masks, record

    def _copied_dense_round(self):
        """A control's round 0 is its ticket's: the same dense training."""
        first = self.ticket.rounds[0]
        record = TicketRound.from_dict(first.to_dict())
        record.masks = self.ticket_masks[0]
        record.layers = {k: (int(m.sum()), m.size)
                         for k, m in record.masks.items()}
        return None, record.masks, record

    def _next_masks(self, index, previous, masks):
        control = self.s["control"]
        if control == "reinit":
            return self.ticket_masks[index]
        if control == "random_mask":
            return state_io.random_masks(self.ticket_masks[index],
                                         self.s["seed"] * 1000 + index)
        rate, output_rate = self.s["rate"], self.s["output_rate"]
        keys = list(masks)
        targets = {k: 1 - (1 - rate) ** index for k in keys}
        if output_rate is not None:
            last = state_io.prunable(previous)[-1][1].layer.name
            for k in keys:
                if k.startswith(last + "/"):
                    targets[k] = 1 - (1 - output_rate) ** index
        return state_io.prune_survivors(previous, masks, targets,
                                        self.s["scope"])

    def _reset(self, index):
        control, rewind = self.s["control"], self.s["rewind"]
        if control == "reinit":
            fresh = keras.models.clone_model(self.dense)
            state_io.set_state(self.dense, state_io.get_state(fresh))
        elif control == "random_mask" or rewind == "init" or rewind == 0:
            state_io.set_state(self.dense, self.theta_0)
        elif not isinstance(rewind, str):
            state_io.set_state(self.dense, self.theta_k)
        # "lr" and "finetune" keep the trained weights (already in dense).

    def _pruned(self, masks):
        """A copy of `dense` pruned with `masks` (held: FixedMasks)."""
        sparsity = 0.0
        if masks is not None:
            kept = sum(int(m.sum()) for m in masks.values())
            total = sum(m.size for m in masks.values())
            sparsity = 1 - kept / total
        model = prune_low_magnitude(self.dense, FixedMasks(sparsity))
        if masks is not None:
            state_io.set_masks(model, masks)
        return model

    def _report(self, record):
        names = [k for k in record.metrics if k != "loss"]
        shown = ", ".join(f"{k} {record.metrics[k]:.4f}" for k in names)
        loss = record.metrics.get("loss")
        print(
            f"round {record.index}/{self.s['rounds']}: "
            f"{100 * record.remaining:.2f} % of weights remaining"
            + (f", {shown}" if shown else "")
            + (f", loss {loss:.4f}" if loss is not None else "")
            + f" ({record.seconds_train:.1f} s)",
            file=sys.stdout, flush=True,
        )


class _RecordAt(keras.callbacks.Callback):
    """Keeps the weights after `step` optimizer steps (once)."""

    def __init__(self, step):
        super().__init__()
        self.step = step
        self.seen = 0
        self.state = None

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            # Through self.model: on JAX it syncs the trained state first.
            self.state = state_io.get_state(self.model)


def _translated(ticket, model):
    """The ticket's masks under this model's weight names (a model built
    again has new layer names): matched in model order, shapes checked."""
    keys = [(k, tuple(v.shape)) for k, _, v in state_io.prunable(model)]
    found = []
    for r in ticket.rounds:
        theirs = list(r.masks.values())
        if [tuple(m.shape) for m in theirs] != [shape for _, shape in keys]:
            raise ValueError(
                "find_ticket: the ticket's masks do not fit this model "
                f"(shapes {[tuple(m.shape) for m in theirs]}, the model's "
                f"prunable weights {[shape for _, shape in keys]}); pass "
                "the model the ticket was found for.")
        found.append({k: m for (k, _), m in zip(keys, theirs)})
    return found


def _record(index, masks, scores, lr_start, steps, train_s, prune_s):
    layers = {k: (int(m.sum()), int(m.size)) for k, m in masks.items()}
    return TicketRound(
        index, sum(a for a, _ in layers.values()),
        sum(b for _, b in layers.values()), layers, scores, lr_start, steps,
        train_s, prune_s, masks=masks,
    )


# ---- arguments -------------------------------------------------------------


def _check_rounds(rounds, control, ticket):
    if control is not None and control not in CONTROLS:
        raise ValueError(
            f"find_ticket: control {control!r} is unknown; use None, "
            "'reinit' or 'random_mask'.")
    if control is not None:
        if ticket is None or not ticket.rounds or any(
                r.masks is None for r in ticket.rounds):
            raise ValueError(
                f"find_ticket: control={control!r} reuses a search's masks: "
                "pass ticket=<the LotteryResult of find_ticket>, with its "
                "masks.")
        if rounds is None:
            rounds = len(ticket.rounds) - 1
        if isinstance(rounds, int) and rounds > len(ticket.rounds) - 1:
            raise ValueError(
                f"find_ticket: rounds={rounds} but the ticket has "
                f"{len(ticket.rounds) - 1} pruning rounds; ask for at most "
                "that many.")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(
            f"find_ticket: rounds must be an int >= 1 (the number of "
            f"pruning rounds), got {rounds!r}.")
    return rounds


def _check_rate(name, value, allow_zero):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not ((value >= 0 if allow_zero else value > 0)
                    and value < 1)):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(
            f"find_ticket: {name} must be in {interval}, got {value!r}; it "
            "is the fraction of the surviving weights pruned each round "
            "(0.2 prunes a fifth).")


def _check_rewind(rewind, total_steps):
    if isinstance(rewind, str):
        if rewind not in REWINDS:
            raise ValueError(
                f"find_ticket: rewind {rewind!r} is unknown; use 'init', "
                "'lr', 'finetune' or an int step k.")
        return
    if isinstance(rewind, bool) or not isinstance(rewind, numbers.Integral):
        raise ValueError(
            f"find_ticket: rewind must be 'init', 'lr', 'finetune' or an int "
            f"step, got {rewind!r}.")
    if rewind < 0:
        raise ValueError(
            f"find_ticket: rewind step {rewind} is negative; give a step "
            "in 0..(the first round's optimizer steps).")
    if total_steps is None:
        if rewind > 0:
            raise ValueError(
                f"find_ticket: rewind={rewind} needs the training length, "
                "which this dataset does not say; pass steps_per_epoch.")
    elif rewind > total_steps:
        raise ValueError(
            f"find_ticket: rewind step {rewind} is beyond the training "
            f"length ({total_steps} optimizer steps: epochs x steps per "
            f"epoch); give a step in 0..{total_steps}.")


def _split(data):
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    return data, None


def _steps_per_epoch(data, batch_size, steps_per_epoch):
    if steps_per_epoch is not None:
        return int(steps_per_epoch)
    x, y = _split(data)
    if y is not None:
        return math.ceil(len(x) / batch_size)
    try:
        return len(data)
    except TypeError:
        return None


def _is_schedule(value):
    return isinstance(value, keras.optimizers.schedules.LearningRateSchedule)


def _optimizer_factory(optimizer, learning_rate):
    """`(fn(learning_rate) -> a new optimizer, the recipe's rate)`."""
    if isinstance(optimizer, (str, keras.optimizers.Optimizer)):
        template = keras.optimizers.get(optimizer)
        config = template.get_config()
        if learning_rate is None:
            learning_rate = config["learning_rate"]
            if isinstance(learning_rate, dict):
                learning_rate = keras.optimizers.schedules.deserialize(
                    learning_rate)
        cls = type(template)

        def make(rate):
            return cls.from_config(dict(config, learning_rate=rate))

        return make, learning_rate
    if callable(optimizer):
        return optimizer, 1e-3 if learning_rate is None else learning_rate
    raise ValueError(
        f"find_ticket: optimizer must be a name, a keras Optimizer or a "
        f"function fn(learning_rate) -> Optimizer, got {optimizer!r}.")


def _dense_copy(model, seed):
    if isinstance(model, keras.Model):
        built = model
    elif callable(model):
        keras.utils.set_random_seed(seed)
        built = model()
    else:
        built = None
    if not isinstance(built, keras.Model) or not built.built:
        raise ValueError(
            f"find_ticket: model must be a built keras Model or a function "
            f"that returns one, got {type(built).__name__}.")
    if not is_graph_model(built):
        raise ValueError(
            f"find_ticket: model {built.name!r} is subclassed; it needs a "
            "Functional or Sequential model (it clones it every round).")
    if built is not model:
        return built
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _describe(value):
    if isinstance(value, (str, int, float, type(None))):
        return value
    if hasattr(value, "get_config"):
        return {"class": type(value).__name__, "config": _plain(
            value.get_config())}
    return getattr(value, "__name__", type(value).__name__)


def _plain(config):
    if isinstance(config, dict):
        return {k: _plain(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_plain(v) for v in config]
    if isinstance(config, (str, int, float, bool, type(None))):
        return config
    return _describe(config)


def _float(value):
    return float(keras.ops.convert_to_numpy(value))
