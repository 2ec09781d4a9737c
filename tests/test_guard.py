"""The missing-callback check of `fit`: installed by the first pruning
wrapper, never by `import keras_prune`, and only acting on pruned models."""

import os
import subprocess
import sys

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_patches_nothing_and_unpruned_models_are_untouched():
    code = (
        "import keras, numpy as np\n"
        "fit = keras.Model.fit\n"
        "import keras_prune\n"
        "assert keras.Model.fit is fit, 'import keras_prune patched fit'\n"
        "dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
        "dense.compile('sgd', 'mse')\n"
        "keras_prune.prune_low_magnitude(dense)\n"
        "assert keras.Model.fit is not fit  # installed by the wrapper\n"
        "dense.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0)\n"
        "pruned = keras_prune.prune_low_magnitude(dense)\n"
        "pruned.compile('sgd', 'mse')\n"
        "w = [v.copy() for v in pruned.get_weights()]\n"
        "try:\n"
        "    pruned.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0)\n"
        "except ValueError as e:\n"
        "    assert 'UpdatePruningStep' in str(e)\n"
        "else:\n"
        "    raise AssertionError('fit without the callback ran')\n"
        "assert all((a == b).all() for a, b in zip(pruned.get_weights(), w))\n"
    )
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    subprocess.run([sys.executable, "-c", code], check=True, env=env,
                   cwd=ROOT)
