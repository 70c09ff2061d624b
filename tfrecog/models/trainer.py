"""The fused XLA training loop that every tfrecog model inherits (`FusedTrainer`), as Keras's `Model` inherits its
`Trainer`: `compile`, `fit`, `evaluate`, `train_step`, `test_step`.

`fit` on an array copies it once to the device and runs `steps_per_execution` parameter updates inside one compiled
call (a `tf.while_loop` over minibatches gathered by row index), which is faster than Keras's own loop over an
iterator. One update is `train_update`: the gradient of the model's `objective` (its estimator's loss, see
`tfrecog.estimators`) plus `weight_penalty`, or the estimator's own update where it declares one (NVIL).

The mixin needs from the model: `event_size`, `seed`, `weight_prior_scale`, `check_input(x, what, domain)`,
`objective(x, seed, training)`, `weight_penalty()` and `estimator_spec` (the registry entry of its estimator).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from tfrecog import distribute
from tfrecog._tf import keras, tf
from tfrecog.layers import random


class InputError(ValueError):
    """Data given to a model does not match what it expects; the message says what was expected."""


class FusedTrainer:
    """Mixin of `LatentVariableModel` (before `keras.Model` in its bases): the training loop and its state.

    State: the training-set size N of the last `fit` (`num_train_examples`, saved with the weights: the weight
    prior divides by it), a counter of evaluation calls (seeds of the evaluation noise), one `keras.metrics.Mean`
    per diagnostic of the estimator, and the training array of the current `fit` held on the device.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fused_steps = 1
        self._replicated_xla = False  # XLA for each replica's gradient under a multi-replica strategy
        self._fused_mode = 1  # updates per train_step of the current fit: 1 (plain batches) or S (fused blocks)
        # Training-set size N for the weight prior; a variable so it is saved with the weights. (Created before the
        # evaluation counter: weights files store a model's own variables by position.)
        self.num_train_examples = self.add_weight(
            shape=(), initializer="zeros", dtype="float32", trainable=False, name="num_train_examples"
        )
        # Counts test/predict calls so that evaluation noise differs between batches but is reproducible.
        self._eval_counter = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="eval_counter",
            aggregation="only_first_replica",
        )
        self._metric_trackers = {}
        self._resident_data = ResidentData()

    def _step_seed(self):
        """A fresh stateless seed per parameter update and replica: (seed, 1000 * update + replica id)."""
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        step = tf.cast(self.optimizer.iterations, tf.int32) * 1000 + tf.cast(replica_id, tf.int32)
        return tf.stack([tf.constant(self.seed, tf.int32), step])


    def _metric(self, name):
        if name not in self._metric_trackers:
            self._metric_trackers[name] = keras.metrics.Mean(name=name)
        return self._metric_trackers[name]

    @property
    def metrics(self):
        return list(self._metric_trackers.values())

    def _num_replicas(self):
        return self.distribute_strategy.num_replicas_in_sync

    def _distributed(self) -> bool:
        """Whether the model lives under a `tf.distribute` strategy (even one replica: its optimizer then merges
        gradients across replicas, which cannot happen inside the one-device fused while loop)."""
        return self.distribute_strategy is not tf.distribute.get_strategy() or tf.distribute.has_strategy()

    def train_update(self, x):
        """One parameter update on a minibatch x [B, D]; returns the diagnostics to track.

        The estimator's own update where its registry entry has one (NVIL: two optimizers and running statistics);
        otherwise the model optimizer steps every trainable variable along the gradient of the estimator's loss
        plus the weight penalty.
        """
        seed = self._step_seed()
        own_update = self.estimator_spec.train_update
        if own_update is not None:
            return own_update(self, x, seed)
        grads, logs = self._gradient(x, seed)
        self.optimizer.apply(grads, self.trainable_variables)
        return logs

    def _gradient(self, x, seed):
        """The gradient of (the estimator's loss + the weight penalty) / R over the trainable variables, R the
        replicas in sync (the optimizer's all-reduce sums the R gradients), and the metrics: `(grads, logs)`."""
        with tf.GradientTape() as tape:
            loss, diagnostics = self.objective(x, seed, training=True)
            total = loss + self.weight_penalty()
            scaled = total / self._num_replicas()
        return tape.gradient(scaled, self.trainable_variables), {"loss": total, **diagnostics}

    def _update_trackers(self, logs):
        for name, value in logs.items():
            self._metric(name).update_state(value)

    def _traced_for_xla(self) -> bool:
        """Whether the step being traced runs under XLA (Keras's compiled train/test function), which lets sampling
        use XLA's fast ThreeFry generator (`tfrecog.layers.random`)."""
        return bool(self.jit_compile) and not self.run_eagerly and not tf.executing_eagerly()

    def make_train_function(self, force=False):
        """Keras's train function with one replica; with several, `_replicated_train_function`."""
        if not self._distributed() or self.run_eagerly:
            return super().make_train_function(force)
        if self.train_function is None or force:
            self.train_function = self._replicated_train_function()
        return self.train_function

    def make_test_function(self, force=False):
        """Keras's test function with one device; under a strategy, one `strategy.run` of `test_step` per call, the
        metrics averaged over the replicas (Keras's own reduces each scalar along an axis 0 that it does not have
        under MultiWorkerMirroredStrategy: 'Invalid reduction dimension 0 for input with 0 dimensions')."""
        if not self._distributed() or self.run_eagerly:
            return super().make_test_function(force)
        if self.test_function is None or force:
            strategy = self.distribute_strategy

            def evaluate(batch):
                strategy.run(self.test_step, args=(batch,))
                return tf.constant(True)

            self.test_function = _stepper(strategy, evaluate, self._tracker_results)
        return self.test_function

    def _tracker_results(self):
        return {name: tracker.result() for name, tracker in self._metric_trackers.items()}

    def _replicated_train_function(self):
        """One call = S updates over R replicas: a `tf.while_loop` (in the cross-replica context) whose body is one
        `strategy.run`, in which each replica takes its M / R rows of the minibatch, computes its gradient (under XLA
        where asked) and the optimizer all-reduces the R gradients (their sum: each replica's loss is divided by R, so
        the sum is the gradient of the mean loss over the global minibatch of M rows) and applies the update.

        Keras's own multi-step loop cannot do this here: it compiles `strategy.run` with the all-reduce into one XLA
        computation, which fails on CPU devices, and its `steps_per_execution` loop failed under MirroredStrategy
        (an unfed placeholder in its while/cond). With `jit_compile` the optimizers' steps are compiled too, one XLA
        computation per device (`distribute.compile_optimizer_step`); glibc is asked to keep freed heap pages mapped
        (`distribute.keep_freed_heap`).
        """
        strategy = self.distribute_strategy
        num_updates = self._fused_mode
        distribute.keep_freed_heap()
        if self._replicated_xla:  # compiled with jit_compile=True (the default): the optimizers' steps too
            for optimizer in self._optimizers():
                distribute.compile_optimizer_step(optimizer)

        def replica_update(block, s):
            minibatch = _column(block, s, num_updates, self.event_size)
            self._update_trackers(self._replica_train_update(minibatch))
            return tf.constant(0)

        def updates(block):
            block = block[0] if isinstance(block, (tuple, list)) else block
            tf.while_loop(lambda s: s < num_updates,
                          lambda s: (strategy.run(replica_update, args=(block, s)), s + 1)[1],
                          [tf.constant(0)], maximum_iterations=num_updates)
            return tf.constant(True)

        return _stepper(strategy, updates, self._tracker_results)

    def _replica_train_update(self, x):
        """One replica's part of an update: its gradient (an XLA computation where compiled with jit_compile; for an
        estimator with its own update, the `gradients` part it declares), then the cross-replica all-reduce outside
        XLA and the optimizers' steps."""
        own_update = self.estimator_spec.train_update
        seed = self._step_seed()
        if own_update is not None:
            own_gradients = self.estimator_spec.gradients
            if self._replicated_xla and own_gradients is not None:
                return own_update(self, x, seed, gradients=self._xla_own_gradients(own_gradients))
            return own_update(self, x, seed)
        if not self._replicated_xla:
            return self.train_update(x)
        grads, logs = self._xla_gradient(x, seed)
        self.optimizer.apply(grads, self.trainable_variables)
        return logs

    def _optimizers(self) -> list:
        """Every optimizer the model's updates step (a model with more, e.g. NVIL's baseline optimizer, adds them)."""
        optimizer = getattr(self, "optimizer", None)
        return [optimizer] if optimizer is not None else []

    def _xla_step_part(self, attribute: str, function):
        """`function(x, seed)` as one XLA computation (sampling with XLA's ThreeFry), made once and kept under
        `attribute`: a replica's part of an update under a strategy."""
        if getattr(self, attribute, None) is None:
            def compiled(x, seed):
                with random.xla_random(True):
                    return function(x, seed)

            setattr(self, attribute, tf.function(compiled, jit_compile=True, reduce_retracing=True))
        return getattr(self, attribute)

    def _xla_own_gradients(self, gradients):
        """The estimator's `gradients` (the part of its own update within one replica) as one XLA computation, in
        the form its `train_update` takes: `(model, x, seed) -> (grads, logs, replica_stats)`."""
        compiled = self._xla_step_part("_xla_own_gradients_fn", lambda x, seed: gradients(self, x, seed))
        return lambda model, x, seed: compiled(x, seed)

    @property
    def _xla_gradient(self):
        return self._xla_step_part("_xla_gradient_fn", self._gradient)

    def train_step(self, data):
        """S = `steps_per_execution` parameter updates (one per minibatch) in one call; returns the metrics.

        `data` is what `fit` streams: int32 row indices [M, S] into the training array held on the device
        (`fused_dataset`), float rows [M, S, D] (several replicas), or a [M, D] batch (a `tf.data.Dataset` given to
        `fit`; one update). With S > 1 the updates run in a `tf.while_loop` (one XLA computation) and the values of
        the diagnostics are summed in loop variables; the trackers are updated once per call with their mean over
        the S updates and weight S, which gives the same running means as updating them after every update.
        """
        with random.xla_random(self._traced_for_xla()):
            return self._train_step(data)

    def _train_step(self, data):
        data = data[0] if isinstance(data, (tuple, list)) else data
        num_updates = self._fused_mode
        if data.dtype.is_integer:
            # Row indices: each update gathers its own M rows from the resident array (no [M, S, D] block copies).
            rows = self._resident_data.rows
            indices = _with_static_shape(data, [None, num_updates])
            minibatch = lambda s: tf.gather(rows, tf.gather(indices, s, axis=1))  # noqa: E731
        elif num_updates > 1:
            # Batch-major blocks, so that tf.distribute splits the examples of every minibatch, not the updates.
            block = _with_static_shape(tf.cast(data, tf.float32), [None, num_updates, self.event_size])
            minibatch = lambda s: tf.gather(block, s, axis=1)  # noqa: E731
        else:
            batch = _with_static_shape(tf.cast(data, tf.float32), [None, self.event_size])
            minibatch = lambda s: batch  # noqa: E731
        if num_updates == 1:
            self._update_trackers(self.train_update(minibatch(0)))
        else:
            names = list(self._metric_trackers)

            def body(s, sums):
                logs = self.train_update(minibatch(s))
                if set(logs) != set(names):
                    raise ValueError(f"train_update must return the metrics that build() registered, {names}; "
                                     f"got {sorted(logs)}")
                return s + 1, {name: sums[name] + tf.cast(logs[name], tf.float32) for name in names}

            sums = {name: tf.zeros([], tf.float32) for name in names}
            _, sums = tf.while_loop(lambda s, _: s < num_updates, body, (tf.constant(0), sums),
                                    maximum_iterations=num_updates)
            for name, total in sums.items():
                self._metric(name).update_state(total / num_updates, sample_weight=float(num_updates))
        return {name: tracker.result() for name, tracker in self._metric_trackers.items()}

    def test_step(self, data):
        with random.xla_random(self._traced_for_xla()):
            return self._test_step(data)

    def _test_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        x = _with_static_shape(tf.cast(x, tf.float32), [None, self.event_size])
        self._eval_counter.assign_add(1)
        seed = tf.stack([tf.constant(self.seed + 1, tf.int32), tf.convert_to_tensor(self._eval_counter.value)])
        loss, diagnostics = self.objective(x, seed)
        self._update_trackers({"loss": loss + self.weight_penalty(), **diagnostics})
        return {name: tracker.result() for name, tracker in self._metric_trackers.items()}

    def predict_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        return self(_with_static_shape(tf.cast(x, tf.float32), [None, self.event_size]), training=False)

    def build_for_training(self):
        """Creates every variable (networks, metrics, optimizer) outside the compiled loop."""
        with self.distribute_strategy.scope():
            if not self.built:
                self.build((None, self.event_size))
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)

    def build(self, input_shape=None):
        # Running the objective once on a dummy batch creates the networks' weights and names the metrics.
        _, diagnostics = self.objective(tf.zeros([2, self.event_size]), tf.constant([0, 0], tf.int32))
        for name in ["loss", *diagnostics]:
            self._metric(name)
        self.built = True

    def compile(self, optimizer="adam", jit_compile=True, steps_per_execution=50, **kwargs):
        """Like `keras.Model.compile`, with fast defaults: XLA and `steps_per_execution` updates per call.

        With array inputs to `fit`, the `steps_per_execution` updates run inside one compiled XLA loop over
        minibatches already on the device, which is faster than Keras's own loop over an iterator. Losses and
        metrics come from the model's estimator; `loss=` and `metrics=` are not used.
        """
        for unused in ("loss", "metrics"):
            if kwargs.get(unused) is not None:
                raise ValueError(f"{type(self).__name__} computes its own loss and metrics; do not pass {unused}=")
        if isinstance(optimizer, str) and optimizer == "adam":
            optimizer = keras.optimizers.Adam(1e-3)
        steps = max(1, int(steps_per_execution))
        if self._distributed():
            # Several replicas: `make_train_function` builds its own loop of S updates per call (each update a
            # `strategy.run` with its cross-replica gradient all-reduce); XLA compiles each replica's gradient.
            self._replicated_xla = bool(jit_compile)
            jit_compile = False  # Keras's own XLA would wrap strategy.run and the all-reduce, which fails on CPU
        else:
            self._replicated_xla = False
        self._fused_steps = steps
        super().compile(optimizer=optimizer, jit_compile=jit_compile, steps_per_execution=1, **kwargs)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config:
            config["steps_per_execution"] = max(self._fused_steps, config.get("steps_per_execution", 1))
            if self._replicated_xla:
                config["jit_compile"] = True  # asked for; under a strategy it applies to each replica's gradient
        return config

    def compile_from_config(self, config):
        """Recompiles a loaded model with its saved optimizer, XLA and fused-step settings."""
        config = keras.saving.deserialize_keras_object(config)
        for unused in ("loss", "loss_weights", "metrics", "weighted_metrics"):
            config.pop(unused, None)
        self.compile(**config)
        if self.built:
            self.build_for_training()

    def fit(self, x=None, y=None, batch_size=None, epochs=1, validation_data=None, validation_split=0.0,
            shuffle=True, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit` with the fused fast path for array inputs (see `compile`).

        Arrays x [N, D] are checked, shuffled each epoch and cut into minibatches of `batch_size` (default 100);
        each Keras step runs `steps_per_execution` updates. An epoch is ceil(N / (M S)) such steps, so its last step
        may wrap into the next pass over the data. A `tf.data.Dataset` of [B, D] batches takes Keras's own loop.
        """
        if getattr(self, "optimizer", None) is None:
            raise RuntimeError(f"{type(self).__name__} is not compiled: call model.compile() before fit")
        if y is not None:
            raise InputError("these models are unsupervised: fit(x) takes no targets y")
        if kwargs.get("sample_weight") is not None or kwargs.get("class_weight") is not None:
            raise InputError("sample_weight and class_weight are not supported")
        self.build_for_training()
        if not (isinstance(x, tf.data.Dataset) or x is None):
            x = self.check_input(x)
            if validation_split and validation_data is None:
                cut = int(len(x) * (1.0 - validation_split))
                x, validation_data = x[:cut], x[cut:]
        if validation_data is not None and not isinstance(validation_data, tf.data.Dataset):
            validation_data = self.check_input(
                validation_data[0] if isinstance(validation_data, (tuple, list)) else validation_data,
                "validation_data",
            )
            validation_data = _without_autotuning(
                tf.data.Dataset.from_tensor_slices(validation_data).batch(int(batch_size or 100)))
        if isinstance(x, tf.data.Dataset) or x is None:
            if self.weight_prior_scale is not None and float(self.num_train_examples.numpy()) == 0.0:
                warnings.warn("weight prior needs the training-set size; call set_num_train_examples(N) first",
                              stacklevel=2)
            self._set_fused_mode(1)
            return super().fit(x, epochs=epochs, validation_data=validation_data, steps_per_epoch=steps_per_epoch,
                               shuffle=False, **kwargs)
        batch_size = int(batch_size or 100)
        self.set_num_train_examples(len(x))
        dataset, steps = self.fused_dataset(x, batch_size, shuffle=shuffle)
        kwargs["callbacks"] = _with_update_progbar(kwargs.get("callbacks"), self._fused_mode)
        try:
            return super().fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch or steps,
                               validation_data=validation_data, shuffle=False, **kwargs)
        finally:
            self._resident_data.release()

    def _set_fused_mode(self, updates: int):
        if updates != self._fused_mode:
            self._fused_mode = updates
            self.train_function = None  # the compiled step depends on the mode: rebuild it

    def set_num_train_examples(self, n: int):
        """Records the training-set size N that scales the weight prior."""
        self.num_train_examples.assign(float(n))

    def fused_dataset(self, x: np.ndarray, batch_size: int, shuffle: bool = True):
        """The endless tf.data stream that `fit` feeds `train_step` from an array x [N, D], and its steps per epoch.

        The rows are shuffled each pass (seeded by the model's seed; passes follow one another without a gap) and cut
        into blocks of S minibatches of M = `batch_size` rows, S = `steps_per_execution` (at most the minibatches
        in one pass); an epoch is ceil(N / (M S)) blocks. With one replica, x is copied once into a device-resident
        tensor and the stream carries only the row indices of each block, int32 [M, S]: a Keras step then reads
        20 KB instead of copying an [M, S, D] block through tf.data. With several replicas it carries the rows,
        [M, S, D] (or [M, D] when S = 1), batch-major so that tf.distribute splits the examples of each minibatch.
        """
        n = len(x)
        updates = max(1, min(self._fused_steps, math.ceil(n / batch_size)))
        self._set_fused_mode(updates)
        resident = not self._distributed()
        if resident:
            self._resident_data.hold(x)
            # The index stream depends only on the sizes and the seed, not on x: a later fit of the same shape reuses
            # it (no new pipeline and `map` trace per call), and its seeded shuffles go on where the last fit stopped.
            key = (n, batch_size, updates, bool(shuffle), self.seed)
            if self._resident_data.stream_key == key:
                return self._resident_data.stream, math.ceil(n / (batch_size * updates))
            ds = tf.data.Dataset.range(n, output_type=tf.int32)
        else:
            replicas = self._num_replicas()
            if batch_size % replicas:
                raise InputError(f"batch_size={batch_size} does not split over the {replicas} replicas of the "
                                 f"{type(self.distribute_strategy).__name__}: expected a multiple of {replicas}")
            ds = tf.data.Dataset.from_tensor_slices(x)
        if shuffle:
            ds = ds.shuffle(n, seed=self.seed, reshuffle_each_iteration=True)
        ds = ds.repeat()
        if resident:
            ds = ds.batch(batch_size * updates, drop_remainder=True).map(
                lambda b: tf.transpose(tf.reshape(b, [updates, batch_size])))
        elif updates == 1:
            ds = ds.batch(batch_size, drop_remainder=True)
        else:
            ds = ds.batch(batch_size * updates, drop_remainder=True).map(
                lambda b: tf.transpose(tf.reshape(b, [updates, batch_size, self.event_size]), [1, 0, 2])
            )
        ds = _without_autotuning(ds.prefetch(2))
        if resident:
            self._resident_data.stream_key, self._resident_data.stream = key, ds
        return ds, math.ceil(n / (batch_size * updates))

    def predict(self, x, batch_size=None, **kwargs):
        """`keras.Model.predict` (the model's `call`: posterior means) with the input checks of `encode` for arrays."""
        if x is not None and not isinstance(x, tf.data.Dataset):
            x = self.check_input(x, domain="range")
        return super().predict(x, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """`keras.Model.evaluate` with input checks for arrays; returns the estimator's metrics."""
        self.build_for_training()
        if x is not None and not isinstance(x, tf.data.Dataset):
            x = self.check_input(x)
            x = _without_autotuning(tf.data.Dataset.from_tensor_slices(x).batch(int(batch_size or 100)))
        return super().evaluate(x, **kwargs)


class UpdateProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar for `fit`, counting parameter updates instead of Keras steps.

    On the fused path one Keras step (one compiled call) makes S = `updates_per_step` updates, so the bar's target
    for an epoch of T steps is S T updates and after step t (0-based) it shows S (t + 1). Evaluation and prediction
    bars, which are not fused, count batches as Keras's do.
    """

    def __init__(self, updates_per_step: int):
        super().__init__()
        self.updates_per_step = int(updates_per_step)
        self._training = False

    def set_params(self, params):
        super().set_params(params)
        steps = params.get("steps")
        self.target = None if steps is None else steps * self.updates_per_step

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._training = True

    def on_train_end(self, logs=None):
        self._training = False

    def _maybe_init_progbar(self):
        if self.progbar is None:
            self.progbar = keras.utils.Progbar(target=self.target, verbose=self.verbose,
                                               unit_name="update" if self._training else "step",
                                               stateless_metrics=set())

    def on_train_batch_end(self, batch, logs=None):
        self._maybe_init_progbar()
        self.seen = (batch + 1) * self.updates_per_step
        if self.verbose == 1:
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=False)


def _with_update_progbar(callbacks, updates_per_step: int) -> list:
    """`callbacks` with an `UpdateProgbar` in front, unless the caller gave a progress bar of their own."""
    callbacks = list(callbacks or [])
    if any(isinstance(callback, keras.callbacks.ProgbarLogger) for callback in callbacks):
        return callbacks
    return [UpdateProgbar(updates_per_step), *callbacks]


def _column(block, s, num_updates, event_size):
    """Minibatch s of a replica's block: [M', S, D] rows gathered at update s, or the [M', D] batch when S = 1."""
    block = block[0] if isinstance(block, (tuple, list)) else block
    if num_updates == 1:
        return _with_static_shape(tf.cast(block, tf.float32), [None, event_size])
    block = _with_static_shape(tf.cast(block, tf.float32), [None, num_updates, event_size])
    return tf.gather(block, s, axis=1)


def _stepper(strategy, step, results):
    """Keras's `train_function`/`test_function` contract under a strategy: `function(iterator)` runs `step` on the
    iterator's next element in one `tf.function` and returns the replicas' mean `results()`; raises StopIteration
    when the iterator is exhausted (a finite `tf.data.Dataset` ends the epoch)."""

    @tf.function
    def run(iterator):
        optional = iterator.get_next_as_optional()
        has_value = tf.cond(optional.has_value(), lambda: step(optional.get_value()), lambda: tf.constant(False))
        return has_value, _reduce_mean(strategy, strategy.run(results))

    def function(iterator):
        has_value, logs = run(iterator)
        if not bool(has_value):
            raise StopIteration
        return logs

    return function


def _reduce_mean(strategy, values):
    """The mean over replicas of each per-replica value (each replica's running mean over its equal share of the
    examples, so the mean is the running mean over the global minibatches)."""
    return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for name, value in values.items()}


def _with_static_shape(tensor, shape):
    """`tensor`, whose static shape is checked against `shape` (None: any size) and restated where it is unknown.

    A tensor whose static shape already fixes every dimension that `shape` fixes is returned unchanged; only
    otherwise (a retraced `tf.function` may have relaxed the shapes, up to unknown rank) does it go through
    `tf.ensure_shape`, which also checks at run time. The distinction matters for speed: under XLA, `ensure_shape`
    lowers to `set-dimension-size`, and a module with one of those is compiled differently; the random-number
    generator of every sampling op was then inlined into each of its consumers, which made the fused SBN training
    loop 25% slower (bench/SPEED_NOTES.md).
    """
    static = tensor.shape
    if static.rank == len(shape) and all(
        expected is None or static[axis] == expected for axis, expected in enumerate(shape)
    ):
        return tensor
    return tf.ensure_shape(tensor, shape)


def _without_autotuning(dataset):
    """The dataset with tf.data's autotuning switched off.

    These pipelines are fixed (a shuffle, a batch, at most a prefetch of 2), so autotuning has nothing to tune, and its
    background model thread made every deletion of an iterator (the end of each `fit`) wait for up to 0.8 s.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


class ResidentData:
    """The training array of the current `fit`, copied once into a device-resident `tf.Variable` [N, D].

    `train_step` gathers each minibatch from it by the row indices that `fit` streams. It is data, not model state:
    it lives in this plain holder (neither Keras nor TensorFlow tracks it), so it is never saved with the weights or
    exported, and `release` frees it when `fit` returns. It also keeps the index stream (`fused_dataset`) of the last
    `fit`, which does not depend on the array's values. The variable's first dimension is left unknown, so a later
    `fit` on another array of the same width reuses it (and the traced training function) without retracing.
    """

    def __init__(self):
        self.rows = None
        self.stream_key, self.stream = None, None  # fit's index stream over the rows, kept for the next fit

    def hold(self, x: np.ndarray):
        if self.rows is not None and self.rows.shape[-1] == x.shape[-1]:
            self.rows.assign(x)
        else:
            self.rows = tf.Variable(x, trainable=False, shape=tf.TensorShape([None, x.shape[-1]]),
                                    name="resident_training_data")

    def release(self):
        """Frees the array's memory; the variable (and the functions that captured it) stay valid."""
        if self.rows is not None:
            self.rows.assign(tf.zeros([0, self.rows.shape[-1]], self.rows.dtype))
