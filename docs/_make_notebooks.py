"""Write the docs notebooks (kept without outputs; the test suite executes them).

    python docs/_make_notebooks.py

Each notebook calls ``aiqc.setup()``: set ``AIQC_DB`` to keep its records apart. With
``AIQC_DOCS_SMOKE=1`` (as in the tests) the grids train for very few epochs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
SMOKE = "import os\nSMOKE = bool(os.environ.get('AIQC_DOCS_SMOKE'))  # the test suite trains very few epochs"

NOTEBOOKS = {
    "keras_multiclass.ipynb": [
        "# Keras, multiclass: the reference flow end to end\n\nIris, one-hot label, scaled features, a 3 x 2 x 2 "
        "grid trained twice: 24 jobs. Then the results: every job as a DataFrame, the best one, its charts, and "
        "predictions on raw rows.",
        SMOKE,
        """import aiqc
from aiqc import datum
from sklearn.preprocessing import OneHotEncoder, StandardScaler

aiqc.setup()
df = datum.to_pandas('iris.tsv')

splitset = aiqc.Pipeline.Tabular.make(
    df_or_path=df,
    label_column='species',
    label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
    feature_cols_excluded='species',
    feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=['float64'])],
    size_test=0.22,
    size_validation=0.12,
    fold_count=None,
    bin_count=None,
)
splitset.id""",
        """def fn_build(features_shape, label_shape, **hp):
    import keras
    m = keras.Sequential([
        keras.Input(shape=features_shape),
        keras.layers.Dense(hp['neuron_count'], activation='relu'),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(label_shape[0], activation='softmax'),
    ])
    return m


def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import keras
    model.compile(loss=loser, optimizer=optimizer, metrics=['accuracy'])
    model.fit(samples_train['features'], samples_train['labels'],
              validation_data=(samples_evaluate['features'], samples_evaluate['labels']),
              verbose=0, batch_size=hp['batch_size'], epochs=hp['epoch_count'],
              callbacks=[keras.callbacks.History()])
    return model


hyperparameters = {
    'neuron_count': [12, 24, 36],
    'batch_size': [3, 5],
    'epoch_count': [1, 2] if SMOKE else [30, 60],
}

queue = aiqc.Experiment.make(
    library='keras',
    analysis_type='classification_multi',
    fn_build=fn_build,
    fn_train=fn_train,
    fn_lose=None,
    fn_optimize=None,
    fn_predict=None,
    repeat_count=2,
    hyperparameters=hyperparameters,
    splitset_id=splitset.id,
    hide_test=False,
)
queue.run_jobs()""",
        "## Results",
        "queue.metrics_to_pandas(sort_by='accuracy').head(10)",
        "best = queue.best_job()   # by validation accuracy\nbest.hyperparameters, best.metrics()['test']",
        "best.history_to_pandas().tail()",
        "best.plot_learning_curve()",
        "best.plot_confusion_matrix()",
        "best.plot_roc_curve()",
        "queue.plot_performance(metric='accuracy')",
        "queue.plot_hyperparameters()",
        "## Predict on new raw rows\n\nThe stored encoders are applied, and classes come back as names.",
        "new_rows = df.sample(5, random_state=0).drop(columns='species')\nbest.predict(new_rows)",
        "queue.report('keras_multiclass_report.html')",
    ],
    "pytorch_binary.ipynb": [
        "# PyTorch, binary classification\n\nBreast cancer diagnosis (malignant / benign), a small network ending in "
        "`Sigmoid` (the default loss is `BCELoss`), trained with `aiqc.torch_fit`, which records the history.",
        SMOKE,
        """import aiqc
from aiqc import datum
from sklearn.preprocessing import OrdinalEncoder, StandardScaler

aiqc.setup()
df = datum.to_pandas('breast_cancer.csv')
splitset = aiqc.Pipeline.Tabular.make(
    df_or_path=df, label_column='diagnosis',
    label_encoder=dict(sklearn_preprocess=OrdinalEncoder()),
    feature_cols_excluded='diagnosis',
    feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=['float64'])],
    size_test=0.2, size_validation=0.15,
)""",
        """def fn_build(features_shape, label_shape, **hp):
    import torch.nn as nn
    return nn.Sequential(
        nn.Linear(features_shape[0], hp['neuron_count']), nn.ReLU(),
        nn.Linear(hp['neuron_count'], 1), nn.Sigmoid(),
    )


def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc
    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp['epoch_count'], batch_size=hp['batch_size'])


queue = aiqc.Experiment.make(
    library='pytorch', analysis_type='classification_binary',
    fn_build=fn_build, fn_train=fn_train,
    hyperparameters={'neuron_count': [8, 32], 'batch_size': [16], 'learning_rate': [0.01, 0.001],
                     'epoch_count': [2] if SMOKE else [40]},
    repeat_count=2, splitset_id=splitset.id,
)
queue.run_jobs()""",
        "queue.metrics_aggregate(['accuracy', 'roc_auc'])",
        "best = queue.best_job(metric='roc_auc')\nbest.plot_roc_curve()",
        "best.plot_precision_recall()",
        "best.predict(df.head(5))",
    ],
    "regression_bins.ipynb": [
        "# Regression, stratified by quantile bins\n\nDiabetes progression is continuous: `bin_count=4` keeps "
        "each split's distribution of the label alike. The label is scaled; predictions come back in its units.",
        SMOKE,
        """import aiqc
from aiqc import datum
from sklearn.preprocessing import StandardScaler

aiqc.setup()
df = datum.to_pandas('diabetes.csv')
splitset = aiqc.Pipeline.Tabular.make(
    df_or_path=df, label_column='progression',
    label_encoder=dict(sklearn_preprocess=StandardScaler()),
    feature_cols_excluded='progression',
    feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=['float64'])],
    size_test=0.2, size_validation=0.2, bin_count=4,
)""",
        """def fn_build(features_shape, label_shape, **hp):
    import torch.nn as nn
    return nn.Sequential(nn.Linear(features_shape[0], hp['neuron_count']), nn.ReLU(),
                         nn.Linear(hp['neuron_count'], label_shape[0]))


def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc
    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp['epoch_count'], batch_size=hp['batch_size'])


queue = aiqc.Experiment.make(
    library='pytorch', analysis_type='regression', fn_build=fn_build, fn_train=fn_train,
    hyperparameters={'neuron_count': [16, 64], 'batch_size': [16], 'epoch_count': [3] if SMOKE else [60]},
    repeat_count=2, splitset_id=splitset.id,
)
queue.run_jobs()""",
        "queue.metrics_to_pandas(selected_metrics=['r2', 'mae'], sort_by='r2').head()",
        "best = queue.best_job()   # by validation r2\nbest.plot_regression()",
        "best.predict(df.head(5)).assign(actual=df.progression.head(5))",
    ],
    "folds_aggregate.ipynb": [
        "# Folds: is this combination reliably better?\n\n`fold_count=5` makes 5 stratified folds over the "
        "training rows; every combination x repeat trains once per fold, each evaluated on its own held-out "
        "rows. `metrics_aggregate` answers with mean, spread and range.",
        SMOKE,
        """import aiqc
from aiqc import datum
from sklearn.preprocessing import OneHotEncoder, StandardScaler

aiqc.setup()
splitset = aiqc.Pipeline.Tabular.make(
    df_or_path=datum.to_pandas('iris_10x.tsv'), label_column='species',
    label_encoder=dict(sklearn_preprocess=OneHotEncoder()), feature_cols_excluded='species',
    feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=['float64'])],
    size_test=0.2, size_validation=None, fold_count=5,
)""",
        """def fn_build(features_shape, label_shape, **hp):
    import torch.nn as nn
    return nn.Sequential(nn.Linear(features_shape[0], hp['neuron_count']), nn.ReLU(),
                         nn.Linear(hp['neuron_count'], label_shape[0]))


def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc
    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp['epoch_count'], batch_size=hp['batch_size'])


queue = aiqc.Experiment.make(
    library='pytorch', analysis_type='classification_multi', fn_build=fn_build, fn_train=fn_train,
    hyperparameters={'neuron_count': [4, 32], 'batch_size': [64], 'epoch_count': [1] if SMOKE else [20]},
    repeat_count=1, splitset_id=splitset.id,
)
queue.run_jobs()   # 2 combinations x 1 repeat x 5 folds = 10 jobs""",
        "queue.metrics_aggregate(['accuracy', 'f1'])",
        "queue.plot_repeat_spread(metric='accuracy')",
    ],
    "search_pruning.ipynb": [
        "# Bayesian search with pruning\n\nInstead of a grid: distributions, a number of trials, and a "
        "median pruner that stops a job whose validation loss is worse than the finished trials' at the same "
        "epoch. Every trial is an ordinary job, with its splits, metrics and history in the database.",
        SMOKE,
        """import aiqc
from aiqc import datum
from aiqc.search import Categorical, Float, Int, Search
from sklearn.preprocessing import OrdinalEncoder, StandardScaler

aiqc.setup()
df = datum.to_pandas('breast_cancer.csv')
splitset = aiqc.Pipeline.Tabular.make(
    df_or_path=df, label_column='diagnosis',
    label_encoder=dict(sklearn_preprocess=OrdinalEncoder()), feature_cols_excluded='diagnosis',
    feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=['float64'])],
    size_test=0.2, size_validation=0.2,
)""",
        """def fn_build(features_shape, label_shape, **hp):
    import torch.nn as nn
    return nn.Sequential(nn.Linear(features_shape[0], hp['neuron_count']), nn.ReLU(),
                         nn.Linear(hp['neuron_count'], 1), nn.Sigmoid())


def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc
    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp['epoch_count'], batch_size=hp['batch_size'])


queue = aiqc.Experiment.make(
    library='pytorch', analysis_type='classification_binary', fn_build=fn_build, fn_train=fn_train,
    hyperparameters={
        'neuron_count': Int(2, 64, log=True),
        'learning_rate': Float(1e-5, 1e-1, log=True),   # read by the default Adamax optimizer
        'batch_size': Categorical([16, 64]),
        'epoch_count': [4] if SMOKE else [30],
    },
    splitset_id=splitset.id,
    search=Search(strategy='bayesian', n_trials=8 if SMOKE else 40, metric='roc_auc', seed=0,
                  pruner='median', n_startup_trials=3, n_warmup_epochs=2),
)
queue.run_jobs()""",
        "queue.best_params()",
        "queue.plot_optimization_history()",
        "queue.plot_intermediate_values()",
        "queue.plot_param_importance()",
        "queue.plot_contour('learning_rate', 'neuron_count')",
        "queue.metrics_to_pandas(selected_metrics=['roc_auc'], states=['PRUNED']).head()",
    ],
    "images_pytorch_cnn.ipynb": [
        "# Images: a CNN on digits in PyTorch\n\nscikit-learn's digits written as a folder of 8 x 8 PNG files, one "
        "subfolder per label (`datum.get_path('digits')`). `Pipeline.Image.make` reads and stores them, splits them "
        "stratified and fits the pixel scaler on the training images only. PyTorch receives images channels first: "
        "`features_shape` is (channels, height, width).",
        SMOKE,
        """import aiqc
from aiqc import datum
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

aiqc.setup()
folder = datum.get_path('digits')          # digits/<label>/<index>.png
splitset = aiqc.Pipeline.Image.make(
    folder,                                 # labels from the subfolder names
    label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
    feature_encoders=dict(sklearn_preprocess=MinMaxScaler()),   # pixels to [0, 1], fit on training images
    size_test=0.2, size_validation=0.15, random_state=0,
)
splitset.label.dataset.sample_shape""",
        """def fn_build(features_shape, label_shape, **hp):
    import torch.nn as nn
    channels, height, width = features_shape
    return nn.Sequential(
        nn.Conv2d(channels, hp['filters'], kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(hp['filters'] * (height // 2) * (width // 2), label_shape[0]),
    )


def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc
    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp['epoch_count'], batch_size=32)


queue = aiqc.Experiment.make(
    library='pytorch', analysis_type='classification_multi', fn_build=fn_build, fn_train=fn_train,
    hyperparameters={'filters': [8, 16], 'epoch_count': [3] if SMOKE else [15]},
    splitset_id=splitset.id, name='digits cnn', tags=['images'],
)
queue.run_jobs()""",
        "queue.metrics_to_pandas(['accuracy', 'f1'])",
        "best = queue.best_job()\nbest.plot_learning_curve()",
        "best.plot_confusion_matrix()",
        """from pathlib import Path
files = sorted(Path(folder).glob('7/*.png'))[:5]   # raw image files, through the stored scaler
best.predict([str(f) for f in files])""",
    ],
    "sequences_keras_gru.ipynb": [
        "# Sequences: a GRU on noisy signals in Keras\n\nA generated set of multivariate signals (sine, square, "
        "sawtooth, with noise) as a long table: one row per sequence and timestep. `Pipeline.Sequence.make` pivots "
        "it to (sequences, timesteps, features) and fits a per-feature scaler on the training sequences only.",
        SMOKE,
        """import aiqc
from aiqc import datum
from sklearn.preprocessing import OneHotEncoder, StandardScaler

aiqc.setup()
df = datum.to_pandas('signals.parquet')
df.head()""",
        """splitset = aiqc.Pipeline.Sequence.make(
    df, label_column='label', sequence_column='sequence_id', order_column='t',
    label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
    feature_encoders=dict(sklearn_preprocess=StandardScaler()),
    size_test=0.2, size_validation=0.15, random_state=0,
)
splitset.label.dataset.sample_shape    # [timesteps, features]""",
        """def fn_build(features_shape, label_shape, **hp):
    import keras
    return keras.Sequential([
        keras.Input(shape=features_shape),
        keras.layers.GRU(hp['units']),
        keras.layers.Dense(label_shape[0], activation='softmax'),
    ])


def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    model.compile(loss=loser, optimizer=optimizer, metrics=['accuracy'])
    model.fit(samples_train['features'], samples_train['labels'],
              validation_data=(samples_evaluate['features'], samples_evaluate['labels']),
              verbose=0, batch_size=32, epochs=hp['epoch_count'])
    return model


queue = aiqc.Experiment.make(
    library='keras', analysis_type='classification_multi', fn_build=fn_build, fn_train=fn_train,
    hyperparameters={'units': [8, 16], 'epoch_count': [3] if SMOKE else [20]},
    splitset_id=splitset.id, name='signals gru', tags=['sequences'],
)
queue.run_jobs()""",
        "queue.metrics_to_pandas(['accuracy'])",
        "best = queue.best_job()\nbest.plot_learning_curve()",
        "best.plot_confusion_matrix()",
        """new = df[df['sequence_id'].isin(df['sequence_id'].unique()[:5])]   # raw sequences as a long table
best.predict(new)""",
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(cells=[new_markdown_cell(c) if c.startswith("#") or c.startswith("The ")
                                       else new_code_cell(c) for c in cells])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, HERE / name)


if __name__ == "__main__":
    main()
