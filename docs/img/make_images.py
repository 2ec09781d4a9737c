"""Draws the figures of docs/visualize.md from real runs: schedule.png,
sparsity.png, sensitivity.png (offline, a minute on a laptop CPU).

    KERAS_BACKEND=jax python docs/img/make_images.py
"""

import pathlib

import keras

import keras_prune
from keras_prune import plots
from keras_prune.datasets import load_digits
from keras_prune.analysis.sensitivity import sensitivity_analysis

HERE = pathlib.Path(__file__).resolve().parent
L = keras.layers


def main():
    keras.utils.set_random_seed(0)
    schedule = keras_prune.PolynomialDecay(
        0.5, 0.9, begin_step=2000, end_step=4000, frequency=100
    )
    plots.schedule_plot(
        keras_prune.preview(schedule, 5000), HERE / "schedule.png"
    )

    (x_train, y_train), (x_test, y_test) = load_digits()
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(16, 3, activation="relu", name="conv1"),
            L.Conv2D(32, 3, activation="relu", name="conv2"),
            L.Flatten(),
            L.Dense(64, activation="relu", name="hidden"),
            L.Dense(10, name="logits"),
        ],
        name="digits_cnn",
    )
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
    baseline = model.evaluate(x_test, y_test, verbose=0)[1]
    print(f"dense test accuracy {baseline:.3f}")

    # One global threshold at 80 %, the classifier head left dense.
    pruned, report = keras_prune.prune_now(
        model, 0.8, scope="global", exclude=["logits"]
    )
    print(report)
    plots.sparsity_bars(report, HERE / "sparsity.png")

    result = sensitivity_analysis(
        model, (x_test, y_test), sparsities=(0.5, 0.7, 0.8, 0.9, 0.95)
    )
    print(result)
    plots.sensitivity_plot(result, HERE / "sensitivity.png")


if __name__ == "__main__":
    main()
