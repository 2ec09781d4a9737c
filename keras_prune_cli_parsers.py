"""The commands' parsers as data (generated: do not edit).

Written by `python -m keras_prune.cli.snapshot --write` from the parsers
keras_prune.cli builds; read by keras_prune_cli. tests/test_cli_startup.py
checks that it is current.
"""

PARSERS = {'report': {'description': 'Prints the SparsityReport of a saved Keras model, '
                           'dense, pruned (with pruning wrappers) or '
                           'stripped: for every weight its shape, zeros, '
                           'sparsity and whether keras_prune prunes it (and '
                           'if not, why: bias, normalization statistic, ...), '
                           'then totals with and without the weights that are '
                           'not prunable.',
            'epilog': 'examples:\n'
                      '  keras-prune report model.keras        every weight: '
                      'prunable or not (and why), zeros\n'
                      '  keras-prune report pruned.keras --json\n'
                      '                                        the same as '
                      'one JSON document on stdout\n'
                      '  keras-prune report custom.keras --unsafe\n'
                      '                                        a file you '
                      'trust that holds a Lambda layer\n'
                      '  keras-prune report pruned.keras --sizes\n'
                      '                                        + dense, '
                      '.keras, zipped and packed sizes\n',
            'groups': [{'title': 'positional arguments', 'description': None},
                       {'title': 'options', 'description': None}],
            'arguments': [{'option_strings': [],
                           'dest': 'model',
                           'action': 'store',
                           'help': 'a saved model',
                           'default': None,
                           'required': True,
                           'nargs': None,
                           'metavar': 'MODEL.keras',
                           'type': None,
                           'choices': None,
                           'group': 0},
                          {'option_strings': ['--sizes'],
                           'dest': 'sizes',
                           'action': 'store_true',
                           'help': 'also measure the sizes that show the '
                                   'pruning (keras_prune.model_size of the '
                                   'stripped model): dense bytes, .keras '
                                   'file, zipped .keras, packed float32 and '
                                   'int8 files; under --json as the key '
                                   '"sizes"',
                           'default': False,
                           'required': False,
                           'group': 1},
                          {'option_strings': ['--json'],
                           'dest': 'json',
                           'action': 'store_true',
                           'help': 'print the report '
                                   '(SparsityReport.to_dict()) as one JSON '
                                   'document instead of a table',
                           'default': False,
                           'required': False,
                           'group': 1},
                          {'option_strings': ['--unsafe'],
                           'dest': 'unsafe',
                           'action': 'store_true',
                           'help': 'load models with safe_mode=False, which '
                                   'runs the Python code of Lambda layers: '
                                   'only for files you trust',
                           'default': False,
                           'required': False,
                           'group': 1}]},
 'schedule': {'description': 'Previews a pruning schedule '
                             '(keras_prune.preview): the steps at which the '
                             'masks are updated and the sparsity each update '
                             'applies; between updates the masks hold. Values '
                             'are checked as PolynomialDecay / '
                             'ConstantSparsity check them.',
              'epilog': 'examples:\n'
                        '  keras-prune schedule polynomial       0% -> 80% '
                        'over steps 0..1000, masks\n'
                        '                                        updated '
                        'every 100 steps\n'
                        '  keras-prune schedule polynomial --initial 0.5 '
                        '--final 0.9 \\\n'
                        '      --begin 2000 --end 4000 --steps 5000\n'
                        '                                        half of the '
                        'weights go at once, at 2000\n'
                        '  keras-prune schedule constant --target 0.5 --begin '
                        '1000 --frequency 200\n'
                        '  keras-prune schedule polynomial --power 1 --plot '
                        'schedule.png\n'
                        '                                        a linear '
                        'ramp, also drawn to schedule.png\n'
                        '  keras-prune schedule polynomial --json\n',
              'groups': [{'title': 'positional arguments',
                          'description': None},
                         {'title': 'options', 'description': None}],
              'arguments': [{'option_strings': [],
                             'dest': 'kind',
                             'action': 'store',
                             'help': 'polynomial: PolynomialDecay, sparsity '
                                     'rises from --initial to --final between '
                                     '--begin and --end; constant: '
                                     'ConstantSparsity, every update prunes '
                                     'to --final',
                             'default': None,
                             'required': True,
                             'nargs': None,
                             'metavar': None,
                             'type': None,
                             'choices': ('polynomial', 'constant'),
                             'group': 0},
                            {'option_strings': ['--initial'],
                             'dest': 'initial',
                             'action': 'store',
                             'help': 'polynomial only: the sparsity applied '
                                     'at --begin, at once (default: 0.0)',
                             'default': None,
                             'required': False,
                             'nargs': None,
                             'metavar': None,
                             'type': 'float',
                             'choices': None,
                             'group': 1},
                            {'option_strings': ['--final', '--target'],
                             'dest': 'final',
                             'action': 'store',
                             'help': 'polynomial: the sparsity reached at '
                                     '--end; constant: the sparsity of every '
                                     'update (default: %(default)s)',
                             'default': 0.8,
                             'required': False,
                             'nargs': None,
                             'metavar': None,
                             'type': 'float',
                             'choices': None,
                             'group': 1},
                            {'option_strings': ['--begin'],
                             'dest': 'begin',
                             'action': 'store',
                             'help': 'training step of the first mask update '
                                     '(default: %(default)s)',
                             'default': 0,
                             'required': False,
                             'nargs': None,
                             'metavar': None,
                             'type': 'int',
                             'choices': None,
                             'group': 1},
                            {'option_strings': ['--end'],
                             'dest': 'end',
                             'action': 'store',
                             'help': 'polynomial: the step at which --final '
                                     'is reached (default: --begin + 1000); '
                                     'constant: the last step at which masks '
                                     'may be updated, -1 for no end (default: '
                                     '-1)',
                             'default': None,
                             'required': False,
                             'nargs': None,
                             'metavar': None,
                             'type': 'int',
                             'choices': None,
                             'group': 1},
                            {'option_strings': ['--frequency'],
                             'dest': 'frequency',
                             'action': 'store',
                             'help': 'training steps between mask updates '
                                     '(default: 100)',
                             'default': None,
                             'required': False,
                             'nargs': None,
                             'metavar': None,
                             'type': 'int',
                             'choices': None,
                             'group': 1},
                            {'option_strings': ['--power'],
                             'dest': 'power',
                             'action': 'store',
                             'help': 'polynomial only: the exponent of the '
                                     'ramp; 1 is linear, 3 prunes fast at '
                                     'first and slowly near --end (default: '
                                     '3)',
                             'default': None,
                             'required': False,
                             'nargs': None,
                             'metavar': None,
                             'type': 'float',
                             'choices': None,
                             'group': 1},
                            {'option_strings': ['--steps'],
                             'dest': 'steps',
                             'action': 'store',
                             'help': 'training steps to preview (default: '
                                     '--end + --frequency; without an end, '
                                     '--begin + 10 x --frequency)',
                             'default': None,
                             'required': False,
                             'nargs': None,
                             'metavar': 'N',
                             'type': 'int',
                             'choices': None,
                             'group': 1},
                            {'option_strings': ['--plot'],
                             'dest': 'plot',
                             'action': 'store',
                             'help': 'also draw target and actual sparsity '
                                     'per step to this file (needs '
                                     'matplotlib)',
                             'default': None,
                             'required': False,
                             'nargs': None,
                             'metavar': 'FILE.png',
                             'type': None,
                             'choices': None,
                             'group': 1},
                            {'option_strings': ['--force'],
                             'dest': 'force',
                             'action': 'store_true',
                             'help': 'overwrite the --plot file',
                             'default': False,
                             'required': False,
                             'group': 1},
                            {'option_strings': ['--json'],
                             'dest': 'json',
                             'action': 'store_true',
                             'help': 'print the preview '
                                     '(SchedulePreview.to_dict()) as one JSON '
                                     'document instead of a table',
                             'default': False,
                             'required': False,
                             'group': 1}]},
 'prune': {'description': 'Prunes a trained model at once, without training '
                          '(keras_prune.prune_now, ranking the weights by '
                          '--criterion), strips the pruning wrappers and '
                          'writes a plain Keras model whose pruned weights '
                          'are exact zeros, then prints its SparsityReport. '
                          'The output is not compiled, and fine-tuning it as '
                          'it is lets the zeros grow back: to fine-tune with '
                          'the masks held, prune in Python (prune_now) and '
                          'strip after training.',
           'epilog': 'examples:\n'
                     '  keras-prune prune model.keras -o pruned.keras '
                     '--sparsity 0.8\n'
                     '                                        80 % of the '
                     'prunable weights, by\n'
                     '                                        --criterion '
                     'magnitude, --scope global\n'
                     '  keras-prune prune model.keras -o pruned.keras '
                     '--sparsity 0.5 \\\n'
                     '      --scope layer --exclude logits    50 % of every '
                     'kernel but layer "logits"\n'
                     '  keras-prune prune model.keras -o pruned.keras '
                     '--sparsity 0.5 \\\n'
                     '      --criterion taylor --data digits --loss '
                     'sparse_categorical_crossentropy\n'
                     '                                        ranked by |w * '
                     'dL/dw| on the digits\n'
                     '  keras-prune prune model.keras -o pruned.keras '
                     '--sparsity 0.5 \\\n'
                     '      --plugin my_criteria.py --criterion '
                     'abs_times_noise\n'
                     '                                        a criterion '
                     'registered in my_criteria.py\n'
                     '  keras-prune prune model.keras -o pruned.keras '
                     '--sparsity 0.9 --force\n'
                     '                                        overwrite '
                     'pruned.keras\n'
                     '  keras-prune prune model.keras -o pruned.keras '
                     '--sparsity 0.8 --json\n',
           'groups': [{'title': 'positional arguments', 'description': None},
                      {'title': 'options', 'description': None}],
           'arguments': [{'option_strings': [],
                          'dest': 'model',
                          'action': 'store',
                          'help': 'the model to prune (only read)',
                          'default': None,
                          'required': True,
                          'nargs': None,
                          'metavar': 'MODEL.keras',
                          'type': None,
                          'choices': None,
                          'group': 0},
                         {'option_strings': ['-o', '--output'],
                          'dest': 'output',
                          'action': 'store',
                          'help': 'where to write the model (must end in '
                                  '.keras)',
                          'default': None,
                          'required': True,
                          'nargs': None,
                          'metavar': 'OUT.keras',
                          'type': None,
                          'choices': None,
                          'group': 1},
                         {'option_strings': ['--force'],
                          'dest': 'force',
                          'action': 'store_true',
                          'help': 'overwrite OUT.keras if it exists',
                          'default': False,
                          'required': False,
                          'group': 1},
                         {'option_strings': ['--sparsity'],
                          'dest': 'sparsity',
                          'action': 'store',
                          'help': 'fraction of prunable weights set to zero, '
                                  'in [0, 1), e.g. 0.8',
                          'default': None,
                          'required': True,
                          'nargs': None,
                          'metavar': None,
                          'type': 'float',
                          'choices': None,
                          'group': 1},
                         {'option_strings': ['--scope'],
                          'dest': 'scope',
                          'action': 'store',
                          'help': 'global: one ranking across all layers, so '
                                  'layers get different sparsities; layer: '
                                  'every weight pruned to --sparsity; row: '
                                  'every output of a layer keeps the same '
                                  'fraction of its inputs (default: '
                                  '%(default)s)',
                          'default': 'global',
                          'required': False,
                          'nargs': None,
                          'metavar': None,
                          'type': None,
                          'choices': ('layer', 'global', 'row'),
                          'group': 1},
                         {'option_strings': ['--criterion'],
                          'dest': 'criterion',
                          'action': 'store',
                          'help': 'how the weights are ranked, larger scores '
                                  'kept: grasp: GraSP, -w * Hg at '
                                  'initialization, highest removed (needs '
                                  'data= and a loss on logits); magnitude: '
                                  "|w| (tfmot's; the default); movement: hard "
                                  'movement pruning: learned scores, top-v '
                                  '(fit with prune_low_magnitude); random: '
                                  'uniform random scores (a baseline); snip: '
                                  'SNIP, |w * dL/dw| at initialization (needs '
                                  'data= and a loss); soft_movement: soft '
                                  'movement pruning: learned scores, '
                                  'sigmoid(scores) > threshold, sparsity set '
                                  'by an L1 penalty (fit with '
                                  'prune_low_magnitude); sparsegpt: OBS '
                                  'pruning with weight updates from '
                                  'calibration data (SparseGPT; prune_now '
                                  'with calibration_data); supermask: '
                                  'edge-popup supermask: learned scores, '
                                  'top-k of |scores|; taylor: |w * dL/dw| on '
                                  'data (needs data= and a loss); wanda: |w| '
                                  'x ||x_j||_2 on calibration data (Wanda) '
                                  '(default: %(default)s). Criteria '
                                  'registered by a --plugin are choices too',
                          'default': 'magnitude',
                          'required': False,
                          'nargs': None,
                          'metavar': None,
                          'type': None,
                          'choices': ['grasp',
                                      'magnitude',
                                      'movement',
                                      'random',
                                      'snip',
                                      'soft_movement',
                                      'sparsegpt',
                                      'supermask',
                                      'taylor',
                                      'wanda'],
                          'group': 1},
                         {'option_strings': ['--data'],
                          'dest': 'data',
                          'action': 'store',
                          'help': 'for a criterion that needs gradients '
                                  '(here: grasp, snip or taylor): the offline '
                                  'data set whose training split the '
                                  'gradients are averaged over; images are '
                                  "reshaped to the model's input if the "
                                  'number of values matches',
                          'default': None,
                          'required': False,
                          'nargs': None,
                          'metavar': None,
                          'type': None,
                          'choices': ('digits', 'fashion_mnist', 'mnist_5k'),
                          'group': 1},
                         {'option_strings': ['--loss'],
                          'dest': 'loss',
                          'action': 'store',
                          'help': 'with --data: the loss whose gradients are '
                                  'taken, a Keras loss name, e.g. '
                                  'sparse_categorical_crossentropy (default: '
                                  "the model's compiled loss)",
                          'default': None,
                          'required': False,
                          'nargs': None,
                          'metavar': 'NAME',
                          'type': None,
                          'choices': None,
                          'group': 1},
                         {'option_strings': ['--seed'],
                          'dest': 'seed',
                          'action': 'store',
                          'help': 'seed of random criteria (default: '
                                  '%(default)s)',
                          'default': 0,
                          'required': False,
                          'nargs': None,
                          'metavar': None,
                          'type': 'int',
                          'choices': None,
                          'group': 1},
                         {'option_strings': ['--exclude'],
                          'dest': 'exclude',
                          'action': 'extend',
                          'help': 'names of layers to leave dense '
                                  '(repeatable)',
                          'default': None,
                          'required': False,
                          'nargs': '+',
                          'metavar': 'NAME',
                          'type': None,
                          'choices': None,
                          'group': 1},
                         {'option_strings': ['--plugin'],
                          'dest': 'plugin',
                          'action': 'append',
                          'help': 'import this module (a dotted name on the '
                                  'Python path) or run this Python file '
                                  'first, so that the criteria it registers '
                                  '(keras_prune.criteria.register) are '
                                  'choices of --criterion (repeatable)',
                          'default': None,
                          'required': False,
                          'nargs': None,
                          'metavar': 'MODULE_OR_FILE.py',
                          'type': None,
                          'choices': None,
                          'group': 1},
                         {'option_strings': ['--json'],
                          'dest': 'json',
                          'action': 'store_true',
                          'help': 'print the report as one JSON document '
                                  'instead of a table',
                          'default': False,
                          'required': False,
                          'group': 1},
                         {'option_strings': ['--unsafe'],
                          'dest': 'unsafe',
                          'action': 'store_true',
                          'help': 'load models with safe_mode=False, which '
                                  'runs the Python code of Lambda layers: '
                                  'only for files you trust',
                          'default': False,
                          'required': False,
                          'group': 1}]},
 'oneshot': {'description': 'Prunes a trained model at once, without training '
                            '(keras_prune.prune_now with criterion wanda, '
                            'sparsegpt or magnitude), the same fraction of '
                            'every output row (or an M:N pattern), strips the '
                            'pruning wrappers and writes a plain Keras model '
                            'whose pruned weights are exact zeros, then '
                            'prints its SparsityReport and, with calibration '
                            "data, each layer's reconstruction error ||WX - "
                            'W^X||^2 / ||WX||^2, worst first. Wanda and '
                            'SparseGPT prune Dense and EinsumDense layers '
                            "(keras-hub's attention and feed-forward layers "
                            'too); magnitude every prunable weight. The '
                            'output is not compiled; see docs/oneshot.md.',
             'epilog': 'examples:\n'
                       '  keras-prune oneshot model.keras -o pruned.keras '
                       '--method wanda \\\n'
                       '      --sparsity 0.5 --calibration x.npy\n'
                       '                                        half of every '
                       "output row's inputs,\n"
                       '                                        scored |w| * '
                       '||x|| on the inputs in x.npy\n'
                       '  keras-prune oneshot model.keras -o pruned.keras '
                       '--method sparsegpt \\\n'
                       '      --pattern 2:4 --calibration x.npy\n'
                       '                                        2 zeros in '
                       'every 4 inputs, kept weights\n'
                       '                                        updated to '
                       'make up for the pruned ones\n'
                       '  keras-prune oneshot backbone.keras -o pruned.keras '
                       '--method sparsegpt \\\n'
                       '      --sparsity 0.5 --calibration tokens.npz '
                       '--batch-size 8\n'
                       '                                        a keras-hub '
                       'backbone: tokens.npz holds\n'
                       '                                        token_ids and '
                       'padding_mask\n'
                       '  keras-prune oneshot model.keras -o pruned.keras '
                       '--method magnitude \\\n'
                       '      --sparsity 0.5                    the baseline: '
                       'no calibration data\n',
             'groups': [{'title': 'positional arguments', 'description': None},
                        {'title': 'options', 'description': None}],
             'arguments': [{'option_strings': [],
                            'dest': 'model',
                            'action': 'store',
                            'help': 'the model to prune (only read)',
                            'default': None,
                            'required': True,
                            'nargs': None,
                            'metavar': 'MODEL.keras',
                            'type': None,
                            'choices': None,
                            'group': 0},
                           {'option_strings': ['-o', '--output'],
                            'dest': 'output',
                            'action': 'store',
                            'help': 'where to write the model (must end in '
                                    '.keras)',
                            'default': None,
                            'required': True,
                            'nargs': None,
                            'metavar': 'OUT.keras',
                            'type': None,
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--force'],
                            'dest': 'force',
                            'action': 'store_true',
                            'help': 'overwrite OUT.keras if it exists',
                            'default': False,
                            'required': False,
                            'group': 1},
                           {'option_strings': ['--method'],
                            'dest': 'method',
                            'action': 'store',
                            'help': 'wanda: |w| * ||x_j|| on the calibration '
                                    'inputs; sparsegpt: masks and updates of '
                                    "the kept weights from the inputs' X^T X; "
                                    'magnitude: |w|, no calibration data',
                            'default': None,
                            'required': True,
                            'nargs': None,
                            'metavar': None,
                            'type': None,
                            'choices': ('wanda', 'sparsegpt', 'magnitude'),
                            'group': 1},
                           {'option_strings': ['--sparsity'],
                            'dest': 'sparsity',
                            'action': 'store',
                            'help': "fraction of every output row's weights "
                                    'set to zero, in [0, 1), e.g. 0.5 (or '
                                    'give --pattern)',
                            'default': None,
                            'required': False,
                            'nargs': None,
                            'metavar': 'FRACTION',
                            'type': 'float',
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--pattern'],
                            'dest': 'pattern',
                            'action': 'store',
                            'help': 'M zeros in every N consecutive inputs of '
                                    'each output (sparsity_m_by_n=(M, N)), '
                                    'e.g. 2:4 or 4:8, instead of --sparsity',
                            'default': None,
                            'required': False,
                            'nargs': None,
                            'metavar': 'M:N',
                            'type': 'n_m_pattern',
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--calibration'],
                            'dest': 'calibration',
                            'action': 'store',
                            'help': "for wanda and sparsegpt: the model's "
                                    'inputs, no labels: a .npy file (np.save '
                                    'of one array) or a .npz file (np.savez '
                                    "of arrays named as the model's inputs, "
                                    'e.g. token_ids and padding_mask); a few '
                                    'hundred samples are typical (only read)',
                            'default': None,
                            'required': False,
                            'nargs': None,
                            'metavar': 'FILE',
                            'type': None,
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--batch-size'],
                            'dest': 'batch_size',
                            'action': 'store',
                            'help': 'calibration samples per batch (default: '
                                    '32)',
                            'default': None,
                            'required': False,
                            'nargs': None,
                            'metavar': 'N',
                            'type': 'int',
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--damping'],
                            'dest': 'damping',
                            'action': 'store',
                            'help': 'sparsegpt: lambda = DAMPING * '
                                    'mean(diag(X^T X)) added to its diagonal '
                                    '(default: 0.01)',
                            'default': None,
                            'required': False,
                            'nargs': None,
                            'metavar': None,
                            'type': 'float',
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--block-size'],
                            'dest': 'block_size',
                            'action': 'store',
                            'help': 'sparsegpt: columns per block of mask '
                                    'selection and update (default: 128)',
                            'default': None,
                            'required': False,
                            'nargs': None,
                            'metavar': 'COLUMNS',
                            'type': 'int',
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--no-sequential'],
                            'dest': 'no_sequential',
                            'action': 'store_true',
                            'help': 'sparsegpt: measure every layer in one '
                                    'pass on the dense model, instead of each '
                                    'block on the outputs of the pruned '
                                    'blocks before it (faster, usually a '
                                    'little worse)',
                            'default': False,
                            'required': False,
                            'group': 1},
                           {'option_strings': ['--exclude'],
                            'dest': 'exclude',
                            'action': 'extend',
                            'help': 'names of layers to leave dense '
                                    '(repeatable)',
                            'default': None,
                            'required': False,
                            'nargs': '+',
                            'metavar': 'NAME',
                            'type': None,
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--json'],
                            'dest': 'json',
                            'action': 'store_true',
                            'help': 'print the report and the reconstruction '
                                    'errors as one JSON document instead of a '
                                    'table',
                            'default': False,
                            'required': False,
                            'group': 1},
                           {'option_strings': ['--unsafe'],
                            'dest': 'unsafe',
                            'action': 'store_true',
                            'help': 'load models with safe_mode=False, which '
                                    'runs the Python code of Lambda layers: '
                                    'only for files you trust',
                            'default': False,
                            'required': False,
                            'group': 1}]},
 'strip': {'description': 'Loads a model saved with its pruning wrappers '
                          '(e.g. during training with prune_low_magnitude), '
                          'bakes the masks into the weights (exact zeros), '
                          'removes the wrappers (keras_prune.strip_pruning) '
                          'and writes a plain Keras model, then prints its '
                          'SparsityReport.',
           'epilog': 'examples:\n'
                     '  keras-prune strip training.keras -o final.keras\n'
                     '                                        a model saved '
                     'during pruning (with its wrappers\n'
                     '                                        and masks) as '
                     'plain Keras layers, zeros baked in\n',
           'groups': [{'title': 'positional arguments', 'description': None},
                      {'title': 'options', 'description': None}],
           'arguments': [{'option_strings': [],
                          'dest': 'model',
                          'action': 'store',
                          'help': 'a model with pruning wrappers (only read)',
                          'default': None,
                          'required': True,
                          'nargs': None,
                          'metavar': 'PRUNED.keras',
                          'type': None,
                          'choices': None,
                          'group': 0},
                         {'option_strings': ['-o', '--output'],
                          'dest': 'output',
                          'action': 'store',
                          'help': 'where to write the model (must end in '
                                  '.keras)',
                          'default': None,
                          'required': True,
                          'nargs': None,
                          'metavar': 'OUT.keras',
                          'type': None,
                          'choices': None,
                          'group': 1},
                         {'option_strings': ['--force'],
                          'dest': 'force',
                          'action': 'store_true',
                          'help': 'overwrite OUT.keras if it exists',
                          'default': False,
                          'required': False,
                          'group': 1},
                         {'option_strings': ['--json'],
                          'dest': 'json',
                          'action': 'store_true',
                          'help': 'print the report as one JSON document '
                                  'instead of a table',
                          'default': False,
                          'required': False,
                          'group': 1},
                         {'option_strings': ['--unsafe'],
                          'dest': 'unsafe',
                          'action': 'store_true',
                          'help': 'load models with safe_mode=False, which '
                                  'runs the Python code of Lambda layers: '
                                  'only for files you trust',
                          'default': False,
                          'required': False,
                          'group': 1}]},
 'shrink': {'description': 'Plans structured pruning of a saved Functional or '
                           'Sequential model (keras_prune.structured: which '
                           'channels of each channel group go, and why), cuts '
                           'them out (apply_plan) and writes the smaller '
                           'model: plain Keras layers with fewer filters and '
                           'units, not compiled. Prints the plan, the '
                           'parameters and MACs before and after, and '
                           "verify's max abs difference between the smaller "
                           'model and the original with the removed channels '
                           'zeroed, on 4 random inputs (standard normal, seed '
                           '0; about 1e-6 or less: exactly the planned '
                           'channels went). How much goes: --ratio (default '
                           '0.5), --target-params / --target-macs, '
                           "--threshold (NVIDIA TAO's rule) or --plan (a "
                           'saved plan, replayed). Fine-tune the smaller '
                           'model before use.',
            'epilog': 'examples:\n'
                      '  keras-prune shrink model.keras -o small.keras\n'
                      '                                        remove 50% of '
                      'the channels of every\n'
                      '                                        prunable group '
                      '(--criterion l2)\n'
                      '  keras-prune shrink model.keras -o small.keras '
                      '--target-macs 0.5 --round-to 8\n'
                      '                                        at most half '
                      'the MACs, channel counts\n'
                      '                                        multiples of '
                      '8\n'
                      '  keras-prune shrink model.keras -o small.keras '
                      '--threshold 0.3 \\\n'
                      '      --granularity 8 --min-num-filters 16 --exclude '
                      'conv1\n'
                      "                                        NVIDIA TAO's "
                      'rule (plan_by_threshold)\n'
                      '  keras-prune shrink model.keras -o small.keras '
                      '--save-plan plan.json\n'
                      '  keras-prune shrink model.keras -o edited.keras '
                      '--plan plan.json\n'
                      '                                        replay a saved '
                      '(maybe edited) plan\n'
                      '  keras-prune shrink model.keras -o small.keras '
                      '--fold-bn --json\n',
            'groups': [{'title': 'positional arguments', 'description': None},
                       {'title': 'options', 'description': None},
                       {'title': 'how much to remove (one of these; default: '
                                 '--ratio 0.5)',
                        'description': None},
                       {'title': 'with --ratio or '
                                 '--target-params/--target-macs',
                        'description': None},
                       {'title': 'with --threshold (TAO mode)',
                        'description': None},
                       {'title': 'when planning (not with --plan)',
                        'description': None},
                       {'title': 'what is written', 'description': None}],
            'arguments': [{'option_strings': [],
                           'dest': 'model',
                           'action': 'store',
                           'help': 'the model to shrink (only read)',
                           'default': None,
                           'required': True,
                           'nargs': None,
                           'metavar': 'MODEL.keras',
                           'type': None,
                           'choices': None,
                           'group': 0},
                          {'option_strings': ['-o', '--output'],
                           'dest': 'output',
                           'action': 'store',
                           'help': 'where to write the model (must end in '
                                   '.keras)',
                           'default': None,
                           'required': True,
                           'nargs': None,
                           'metavar': 'OUT.keras',
                           'type': None,
                           'choices': None,
                           'group': 1},
                          {'option_strings': ['--force'],
                           'dest': 'force',
                           'action': 'store_true',
                           'help': 'overwrite OUT.keras if it exists',
                           'default': False,
                           'required': False,
                           'group': 1},
                          {'option_strings': ['--ratio'],
                           'dest': 'ratio',
                           'action': 'store',
                           'help': 'fraction of the channels removed, in [0, '
                                   '1): of every prunable group (--scope '
                                   'layer, the default here), or of all '
                                   'channels, lowest normalized scores first '
                                   '(--scope global)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'R',
                           'type': 'float',
                           'choices': None,
                           'group': 2},
                          {'option_strings': ['--target-params'],
                           'dest': 'target_params',
                           'action': 'store',
                           'help': 'remove the least important channels until '
                                   'the parameters are at most N (an integer) '
                                   'or the fraction F (a decimal in (0, 1]) '
                                   "of the model's; may go with --target-macs",
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'N|F',
                           'type': 'count_or_fraction',
                           'choices': None,
                           'group': 2},
                          {'option_strings': ['--target-macs'],
                           'dest': 'target_macs',
                           'action': 'store',
                           'help': 'the same for the multiply-accumulates of '
                                   'one sample (keras_prune.model_cost), e.g. '
                                   '0.5: at most half',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'N|F',
                           'type': 'count_or_fraction',
                           'choices': None,
                           'group': 2},
                          {'option_strings': ['--threshold'],
                           'dest': 'threshold',
                           'action': 'store',
                           'help': 'TAO mode (plan_by_threshold): keep the '
                                   'channels whose normalized L2 score is '
                                   'above T (not a fraction), at least '
                                   '--min-num-filters, a multiple of '
                                   '--granularity',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'T',
                           'type': 'float',
                           'choices': None,
                           'group': 2},
                          {'option_strings': ['--plan'],
                           'dest': 'plan',
                           'action': 'store',
                           'help': 'replay this plan (written by --save-plan, '
                                   'maybe edited) instead of planning; it '
                                   'must have been made for this model',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'PLAN.json',
                           'type': None,
                           'choices': None,
                           'group': 2},
                          {'option_strings': ['--criterion'],
                           'dest': 'criterion',
                           'action': 'store',
                           'help': 'channel importance: bn: |gamma| of the '
                                   "group's BatchNormalization; l1: L1 norm "
                                   "of each channel's kernel slice; l2: L2 "
                                   "norm of each channel's kernel slice (the "
                                   'default); random: uniform random scores '
                                   '(a baseline) (default: l2); criteria '
                                   'registered by a --plugin are choices too. '
                                   'Not taylor, which needs training data: '
                                   'plan in Python with plan_pruning(..., '
                                   "criterion='taylor', data=...), save the "
                                   'plan with to_json and replay it with '
                                   '--plan',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': None,
                           'type': None,
                           'choices': ['bn', 'l1', 'l2', 'random'],
                           'group': 3},
                          {'option_strings': ['--round-to'],
                           'dest': 'round_to',
                           'action': 'store',
                           'help': "round every group's kept channels to a "
                                   "multiple of N (a runtime's channel block, "
                                   'e.g. 16 for ONNX Runtime on x86); up '
                                   'unless --rounding nearest',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'N',
                           'type': 'int',
                           'choices': None,
                           'group': 3},
                          {'option_strings': ['--rounding'],
                           'dest': 'rounding',
                           'action': 'store',
                           'help': 'how --round-to rounds: up (never more '
                                   'removed than asked) or nearest (the MAC '
                                   'total stays near the target; default: up)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': None,
                           'type': None,
                           'choices': ('up', 'nearest'),
                           'group': 3},
                          {'option_strings': ['--scope'],
                           'dest': 'scope',
                           'action': 'store',
                           'help': 'layer: the same fraction of every group; '
                                   'global: one ranking over all groups '
                                   '(default: layer with --ratio, global with '
                                   'targets)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': None,
                           'type': None,
                           'choices': ('layer', 'global'),
                           'group': 3},
                          {'option_strings': ['--reduction'],
                           'dest': 'reduction',
                           'action': 'store',
                           'help': "how the scores of a group's layers "
                                   'combine (default: mean)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': None,
                           'type': None,
                           'choices': ('mean', 'sum', 'max'),
                           'group': 3},
                          {'option_strings': ['--seed'],
                           'dest': 'seed',
                           'action': 'store',
                           'help': 'seed of random criteria (default: 0)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': None,
                           'type': 'int',
                           'choices': None,
                           'group': 3},
                          {'option_strings': ['--granularity'],
                           'dest': 'granularity',
                           'action': 'store',
                           'help': 'kept channels per group are a multiple of '
                                   'N, or the whole group (default: 8)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'N',
                           'type': 'int',
                           'choices': None,
                           'group': 4},
                          {'option_strings': ['--min-num-filters'],
                           'dest': 'min_num_filters',
                           'action': 'store',
                           'help': 'never keep fewer channels of a group, '
                                   'unless it is smaller (default: 16)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'N',
                           'type': 'int',
                           'choices': None,
                           'group': 4},
                          {'option_strings': ['--equalization'],
                           'dest': 'equalization',
                           'action': 'store',
                           'help': "how the normalized scores of a group's "
                                   'layers merge: max, min, mean or geometric '
                                   'mean (default: union)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': None,
                           'type': None,
                           'choices': ('union',
                                       'intersection',
                                       'arithmetic_mean',
                                       'geometric_mean'),
                           'group': 4},
                          {'option_strings': ['--normalizer'],
                           'dest': 'normalizer',
                           'action': 'store',
                           'help': 'how scores are normalized, per layer '
                                   '(default: max)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': None,
                           'type': None,
                           'choices': ('max', 'l2', 'off'),
                           'group': 5},
                          {'option_strings': ['--ignore', '--exclude'],
                           'dest': 'ignore',
                           'action': 'extend',
                           'help': 'layers whose output channels are never '
                                   'removed (repeatable; --exclude is the '
                                   "same option, TAO's excluded_layers)",
                           'default': None,
                           'required': False,
                           'nargs': '+',
                           'metavar': 'NAME',
                           'type': None,
                           'choices': None,
                           'group': 5},
                          {'option_strings': ['--save-plan'],
                           'dest': 'save_plan',
                           'action': 'store',
                           'help': 'also write the plan '
                                   '(PruningPlan.to_json), to read, edit and '
                                   'replay with --plan; not overwritten '
                                   'without --force',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'PLAN.json',
                           'type': None,
                           'choices': None,
                           'group': 6},
                          {'option_strings': ['--fold-bn'],
                           'dest': 'fold_bn',
                           'action': 'store_true',
                           'help': 'also fold each BatchNormalization into '
                                   'the convolution or Dense before it '
                                   '(keras_prune.fold_batchnorm): fewer '
                                   'layers, the same predictions; for '
                                   'inference, after training',
                           'default': False,
                           'required': False,
                           'group': 6},
                          {'option_strings': ['--plugin'],
                           'dest': 'plugin',
                           'action': 'append',
                           'help': 'import this module (a dotted name on the '
                                   'Python path) or run this Python file '
                                   'first, so that the criteria it registers '
                                   '(keras_prune.criteria.register) are '
                                   'choices of --criterion (repeatable)',
                           'default': None,
                           'required': False,
                           'nargs': None,
                           'metavar': 'MODULE_OR_FILE.py',
                           'type': None,
                           'choices': None,
                           'group': 1},
                          {'option_strings': ['--json'],
                           'dest': 'json',
                           'action': 'store_true',
                           'help': 'print the groups, parameters, MACs and '
                                   'verify difference as one JSON document '
                                   'instead of a table',
                           'default': False,
                           'required': False,
                           'group': 1},
                          {'option_strings': ['--unsafe'],
                           'dest': 'unsafe',
                           'action': 'store_true',
                           'help': 'load models with safe_mode=False, which '
                                   'runs the Python code of Lambda layers: '
                                   'only for files you trust',
                           'default': False,
                           'required': False,
                           'group': 1}]},
 'compare': {'description': 'Compares two saved models '
                            '(keras_prune.compare_models): parameters and '
                            'non-zero parameters, file size and zipped size '
                            "(the file zipped with DEFLATE, as tfmot's "
                            'pruning tutorial measures: a .keras file stores '
                            'zeros densely, so pruning shows in the zipped '
                            'size), latency (median time of predict_on_batch '
                            'on random inputs, after 3 warm-up calls) and, '
                            'with --data, test accuracy. Keras computes with '
                            'dense kernels: unstructured zeros make a model '
                            'smaller once compressed, not faster.',
             'epilog': 'examples:\n'
                       '  keras-prune compare model.keras pruned.keras\n'
                       '                                        parameters, '
                       'zeros, file and zipped size, latency\n'
                       '  keras-prune compare model.keras pruned.keras --data '
                       'digits\n'
                       '                                        and test '
                       "accuracy on scikit-learn's 8x8 digits\n"
                       '  keras-prune compare model.keras pruned.keras '
                       '--repeats 0 --json\n'
                       '                                        sizes only, '
                       'as JSON\n',
             'groups': [{'title': 'positional arguments', 'description': None},
                        {'title': 'options', 'description': None}],
             'arguments': [{'option_strings': [],
                            'dest': 'a',
                            'action': 'store',
                            'help': 'the first model, e.g. dense',
                            'default': None,
                            'required': True,
                            'nargs': None,
                            'metavar': 'A.keras',
                            'type': None,
                            'choices': None,
                            'group': 0},
                           {'option_strings': [],
                            'dest': 'b',
                            'action': 'store',
                            'help': 'the second model, e.g. pruned',
                            'default': None,
                            'required': True,
                            'nargs': None,
                            'metavar': 'B.keras',
                            'type': None,
                            'choices': None,
                            'group': 0},
                           {'option_strings': ['--data'],
                            'dest': 'data',
                            'action': 'store',
                            'help': 'also measure test accuracy on this '
                                    'offline data set; images are reshaped to '
                                    "the model's input if the number of "
                                    'values matches',
                            'default': None,
                            'required': False,
                            'nargs': None,
                            'metavar': None,
                            'type': None,
                            'choices': ('digits', 'fashion_mnist', 'mnist_5k'),
                            'group': 1},
                           {'option_strings': ['--batch-sizes'],
                            'dest': 'batch_sizes',
                            'action': 'store',
                            'help': 'batch sizes to time, whose random inputs '
                                    'take at most 1 GiB a model (default: 1 '
                                    '32)',
                            'default': [1, 32],
                            'required': False,
                            'nargs': '+',
                            'metavar': 'N',
                            'type': 'int',
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--repeats'],
                            'dest': 'repeats',
                            'action': 'store',
                            'help': 'timed calls per model and batch size, at '
                                    'most 10,000; 0 skips the latency '
                                    '(default: %(default)s)',
                            'default': 20,
                            'required': False,
                            'nargs': None,
                            'metavar': 'N',
                            'type': 'int',
                            'choices': None,
                            'group': 1},
                           {'option_strings': ['--json'],
                            'dest': 'json',
                            'action': 'store_true',
                            'help': 'print the comparison as one JSON '
                                    'document instead of a table',
                            'default': False,
                            'required': False,
                            'group': 1},
                           {'option_strings': ['--unsafe'],
                            'dest': 'unsafe',
                            'action': 'store_true',
                            'help': 'load models with safe_mode=False, which '
                                    'runs the Python code of Lambda layers: '
                                    'only for files you trust',
                            'default': False,
                            'required': False,
                            'group': 1}]},
 'demo': {'description': 'A tour of what pruning gives. Trains a small CNN on '
                         'Fashion-MNIST (the dense baseline); prunes a copy '
                         'gradually to 90 %% with PolynomialDecay and '
                         'UpdatePruningStep and lets it recover with the '
                         'masks fixed, strips it (strip_pruning) and packs it '
                         '(save_packed, float32 and int8); shrinks another '
                         "copy (structured pruning: half of every layer's "
                         'channels removed, plan_pruning and apply_plan) and '
                         'fine-tunes it. Prints the three side by side (test '
                         'accuracy, zeros, parameters, MACs, file sizes, '
                         'latency), writes them to --out with plots, and the '
                         'commands to try next.',
          'epilog': 'examples:\n'
                    '  keras-prune demo                      the whole tour '
                    '(files in keras-prune-demo/)\n'
                    '  keras-prune demo --quick              the same in '
                    'about a minute\n'
                    '  keras-prune demo --out runs/demo1 --sparsity 0.8 '
                    '--seed 1\n'
                    '  keras-prune demo --force              run again into '
                    'the same folder\n'
                    '  KERAS_BACKEND=jax keras-prune demo    on JAX (or '
                    'torch, tensorflow)\n',
          'groups': [{'title': 'positional arguments', 'description': None},
                     {'title': 'options', 'description': None}],
          'arguments': [{'option_strings': ['--out'],
                         'dest': 'out',
                         'action': 'store',
                         'help': 'folder for dense.keras, pruned.keras, '
                                 'small.keras, the packed files and the plots '
                                 '(created; default: %(default)s)',
                         'default': 'keras-prune-demo',
                         'required': False,
                         'nargs': None,
                         'metavar': 'DIR',
                         'type': None,
                         'choices': None,
                         'group': 1},
                        {'option_strings': ['--force'],
                         'dest': 'force',
                         'action': 'store_true',
                         'help': 'overwrite the files of an earlier run in '
                                 '--out',
                         'default': False,
                         'required': False,
                         'group': 1},
                        {'option_strings': ['--quick'],
                         'dest': 'quick',
                         'action': 'store_true',
                         'help': 'about a minute: 10,000 training images, 2 '
                                 'dense and 2 pruning epochs (options given '
                                 'explicitly still apply)',
                         'default': False,
                         'required': False,
                         'group': 1},
                        {'option_strings': ['--epochs'],
                         'dest': 'epochs',
                         'action': 'store',
                         'help': 'epochs of dense training (default: 3; '
                                 '--quick: 2)',
                         'default': None,
                         'required': False,
                         'nargs': None,
                         'metavar': None,
                         'type': 'int',
                         'choices': None,
                         'group': 1},
                        {'option_strings': ['--prune-epochs'],
                         'dest': 'prune_epochs',
                         'action': 'store',
                         'help': 'epochs of pruning: the sparsity ramp, then '
                                 'recovery with the masks fixed (default: 8; '
                                 '--quick: 2)',
                         'default': None,
                         'required': False,
                         'nargs': None,
                         'metavar': None,
                         'type': 'int',
                         'choices': None,
                         'group': 1},
                        {'option_strings': ['--sparsity'],
                         'dest': 'sparsity',
                         'action': 'store',
                         'help': 'final sparsity of every prunable weight, in '
                                 '[0, 1) (default: %(default)s)',
                         'default': 0.9,
                         'required': False,
                         'nargs': None,
                         'metavar': None,
                         'type': 'float',
                         'choices': None,
                         'group': 1},
                        {'option_strings': ['--train-samples'],
                         'dest': 'train_samples',
                         'action': 'store',
                         'help': 'train on the first N of the 60,000 images '
                                 '(default: all; --quick: 10,000)',
                         'default': None,
                         'required': False,
                         'nargs': None,
                         'metavar': 'N',
                         'type': 'int',
                         'choices': None,
                         'group': 1},
                        {'option_strings': ['--batch-size'],
                         'dest': 'batch_size',
                         'action': 'store',
                         'help': 'training batch size (default: %(default)s)',
                         'default': 64,
                         'required': False,
                         'nargs': None,
                         'metavar': None,
                         'type': 'int',
                         'choices': None,
                         'group': 1},
                        {'option_strings': ['--seed'],
                         'dest': 'seed',
                         'action': 'store',
                         'help': 'random seed (default: %(default)s)',
                         'default': 0,
                         'required': False,
                         'nargs': None,
                         'metavar': None,
                         'type': 'int',
                         'choices': None,
                         'group': 1},
                        {'option_strings': ['--quiet'],
                         'dest': 'quiet',
                         'action': 'store_true',
                         'help': 'print only the result table, no progress',
                         'default': False,
                         'required': False,
                         'group': 1}]}}
