"""The `keras-prune` command.

One subcommand per module of this package (`app.COMMANDS`), each building
its parser (`add_parser`) and running it (`run`). A handler takes the
parsed arguments and returns the exit status: 0 success, 1 failure (a
missing or unreadable file, an output that exists, missing data), 2 usage
error (argparse's own convention).

The commands that read and write models share these rules (`common`):

- a model loads with `keras.saving.load_model(path, safe_mode=True)`; a file
  with a Lambda layer, which Keras refuses in safe mode, loads with
  `--unsafe` (for files you trust);
- an input file is only read, never written;
- an output must end in `.keras`, is never overwritten without `--force`,
  and is written atomically: saved in a fresh temporary directory beside it,
  then moved into place with `os.replace`, so a failed run leaves the old
  file (or none) and no partial one;
- results go to stdout (with `--json`, one JSON document); progress and
  "wrote ..." lines go to stderr.

Choices and defaults come from the library (`choices`); what a command
computes is a library function (`keras_prune.compare_models`, `prune_now`,
`plan_pruning`, ...), so Python users reach it too.
"""

from keras_prune.cli.app import main

__all__ = ["main"]
