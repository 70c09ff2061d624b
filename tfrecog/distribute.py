"""Training and evaluating on several devices and machines through `tf.distribute`: a strategy from its name and
the standard `TF_CONFIG`, checked (one-line errors that name what was expected), the chief, and the broadcast of the
chief's weights after a resume.

  "default"       one device (TensorFlow's default strategy)
  "mirrored"      `tf.distribute.MirroredStrategy` over every local device (GPUs, else the CPU devices)
  "multi-worker"  `tf.distribute.MultiWorkerMirroredStrategy` over the cluster of `TF_CONFIG`:
                  {"cluster": {"worker": ["host0:port", "host1:port", ...]}, "task": {"type": "worker", "index": i}}
                  (a "chief" job of one address may stand beside the workers); the same command runs on every machine,
                  only `TF_CONFIG`'s task index differs. Worker 0 (or the chief) is the chief: it alone writes the run
                  folder.

Each update's gradient is the all-reduced sum over the R replicas of each replica's gradient of (its loss / R), which
is the gradient of the mean loss over the global minibatch of M examples, each replica holding M / R of them.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import socket
import time

from tfrecog._tf import tf

STRATEGIES = ("default", "mirrored", "multi-worker")

# glibc's mallopt parameters M_TOP_PAD and M_MMAP_THRESHOLD, the largest threshold glibc accepts on 64-bit systems,
# and the pad kept under a strategy (TFRECOG_HEAP_TOP_PAD overrides; 0: none).
_M_TOP_PAD, _M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX = -2, -3, 32 << 20
HEAP_TOP_PAD = 64 << 20
_heap_top_pad_set = None
_mirrored = {}  # device names -> the process's MirroredStrategy over them (make_strategy)


class DistributeError(ValueError):
    """A strategy that cannot be set up as asked; the message says what was expected."""


def read_tf_config(environ=None) -> dict:
    """The cluster of the `TF_CONFIG` environment variable, checked: `{"cluster": {job: [address, ...]}, "task":
    {"type": job, "index": i}}` with job among "chief" and "worker", addresses "host:port" and i a task of that job."""
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    if not text:
        raise DistributeError('--strategy multi-worker needs the TF_CONFIG environment variable: expected '
                              'TF_CONFIG=\'{"cluster": {"worker": ["host0:port", "host1:port"]}, '
                              '"task": {"type": "worker", "index": 0}}\' on every machine '
                              '(index = its place in the list)')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise DistributeError(f"TF_CONFIG is not JSON ({err.msg} at character {err.pos}): expected "
                              '{"cluster": {"worker": ["host:port", ...]}, '
                              '"task": {"type": "worker", "index": i}}') from None
    expected = 'expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}'
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not isinstance(
            config.get("task"), dict):
        raise DistributeError(f"TF_CONFIG needs the objects 'cluster' and 'task': {expected}")
    cluster, task = config["cluster"], config["task"]
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise DistributeError(f"TF_CONFIG's cluster has the job(s) {unknown}: expected only 'worker' (and at most one "
                              "'chief') for MultiWorkerMirroredStrategy")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and _is_address(a) for a in addresses):
            raise DistributeError(f"TF_CONFIG's cluster[{job!r}] is {addresses!r}: expected a non-empty list of "
                                  "'host:port' strings")
    if "chief" in cluster and len(cluster["chief"]) != 1:
        raise DistributeError(f"TF_CONFIG's cluster has {len(cluster['chief'])} chiefs: expected at most one")
    if "worker" not in cluster and "chief" not in cluster:
        raise DistributeError(f"TF_CONFIG's cluster has no 'worker' list: {expected}")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise DistributeError(f"TF_CONFIG's task type is {kind!r}: expected one of the cluster's jobs "
                              f"{sorted(cluster)}")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise DistributeError(f"TF_CONFIG's task index is {index!r}: expected an integer from 0 to "
                              f"{len(cluster[kind]) - 1} (the place of this machine in cluster[{kind!r}])")
    return config


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def num_workers(config: dict) -> int:
    return sum(len(addresses) for addresses in config["cluster"].values())


def is_chief_task(config: dict | None) -> bool:
    """Whether this process is the chief of `config` (`read_tf_config`): the 'chief' task, or worker 0 where the
    cluster has no chief (TensorFlow's convention)."""
    if config is None:
        return True
    kind, index = config["task"]["type"], config["task"]["index"]
    if "chief" in config["cluster"]:
        return kind == "chief"
    return kind == "worker" and index == 0


def local_devices() -> tuple:
    """The names of the devices "mirrored" replicates over: every local GPU, else every local CPU device (one on a
    machine without GPUs, unless logical CPU devices were configured)."""
    gpus = tf.config.list_logical_devices("GPU")
    return tuple(d.name for d in gpus) or tuple(d.name for d in tf.config.list_logical_devices("CPU"))


def make_strategy(name: str = "default", timeout_seconds: float = 120.0, environ=None):
    """The `tf.distribute.Strategy` called `name` (see the module's docstring).

    Multi-worker: the cluster of `TF_CONFIG` must assemble within `timeout_seconds` (every worker started with the
    same command); otherwise a `DistributeError` names the addresses waited for. A worker that dies later is detected
    by the coordination service's heartbeat (also `timeout_seconds`), which stops the others with an error.

    "mirrored" returns the same strategy on every call in a process: a second `MirroredStrategy` over the same
    devices restarts the numbering of its collective operations and fails at its first all-reduce with TensorFlow's
    "Shape mismatch in the collective instance 100" (tensorflow/tensorflow#62790; seen here training an SBN, then a
    DLGM, each under its own 2-device strategy).
    """
    if name not in STRATEGIES:
        raise DistributeError(f"unknown strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = local_devices()
        if devices not in _mirrored:
            _mirrored[devices] = tf.distribute.MirroredStrategy(list(devices))
        return _mirrored[devices]
    config = read_tf_config(environ)
    if environ is not None:
        os.environ["TF_CONFIG"] = environ["TF_CONFIG"]
    wait_for_peers(config, timeout_seconds)
    _configure_coordination(config, timeout_seconds)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, RuntimeError) as err:
        raise DistributeError(_unreachable(config, timeout_seconds, err)) from None
    return strategy


def wait_for_peers(config: dict, timeout_seconds: float = 120.0):
    """Waits until every other address of the cluster accepts TCP connections, at most `timeout_seconds`; else a
    `DistributeError` names the addresses that did not answer.

    TensorFlow's own cluster join can wait forever (and then ignores SIGTERM), so this plain-socket check runs first:
    this process listens on its own address meanwhile (without accepting: the kernel completes the handshake), so a
    peer doing the same check sees it, and closes it before TensorFlow's server takes the port.
    """
    own = config["cluster"][config["task"]["type"]][config["task"]["index"]]
    peers = [a for job in ("chief", "worker") for a in config["cluster"].get(job, []) if a != own]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(own.rpartition(":")[2])))
        listener.listen(64)
    except OSError as err:
        listener.close()
        raise DistributeError(f"cannot listen on {own}, this task's address in TF_CONFIG ({err.strerror}): expected a "
                              "free port on this machine") from None
    deadline = time.monotonic() + timeout_seconds
    waiting = list(peers)
    try:
        while waiting:
            for address in list(waiting):
                host, _, port = address.rpartition(":")
                try:
                    with socket.create_connection((host, int(port)), timeout=1.0):
                        waiting.remove(address)
                except OSError:
                    pass
            if waiting and time.monotonic() > deadline:
                raise DistributeError(f"the cluster of TF_CONFIG did not assemble within {timeout_seconds:g} s: no "
                                      f"answer from {', '.join(waiting)}; expected every address of the cluster to run "
                                      "the same command with its own task index")
            if waiting:
                time.sleep(0.2)
    finally:
        listener.close()


def _unreachable(config, timeout_seconds, err) -> str:
    peers = [a for job, addresses in config["cluster"].items() for a in addresses]
    first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return (f"the cluster of TF_CONFIG did not assemble within {timeout_seconds:g} s ({first}): expected every "
            f"address of {peers} to run the same command with its own task index")


def _configure_coordination(config, timeout_seconds):
    """TensorFlow's coordination service as MultiWorkerMirroredStrategy would configure it, with timeouts: joining
    the cluster and a peer's heartbeat each bounded by `timeout_seconds` (TensorFlow's default waits forever)."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    if context.context().coordination_service is not None:
        return
    cluster_spec = tf.train.ClusterSpec(config["cluster"])
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster_spec.num_tasks(job))
            for job in ("chief", "worker") if job in cluster_spec.jobs]
    milliseconds = int(timeout_seconds * 1000)
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(cluster_spec),
        coordinated_jobs=jobs, cluster_register_timeout_in_ms=milliseconds,
        heartbeat_timeout_in_ms=milliseconds, shutdown_barrier_timeout_in_ms=milliseconds)


def is_chief(strategy=None) -> bool:
    """Whether this process writes the run folder: always outside a multi-worker strategy; else the chief task."""
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    kind, index = resolver.task_type, resolver.task_id
    if "chief" in resolver.cluster_spec().jobs:
        return kind == "chief"
    return kind in (None, "worker") and (index or 0) == 0


def check_batch(batch_size: int, strategy=None, what: str = "batch_size"):
    """The global minibatch of `batch_size` examples splits evenly over the strategy's replicas, or a
    `DistributeError` says which sizes would."""
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise DistributeError(f"{what}={batch_size} does not divide over the {replicas} replicas of the "
                              f"{type(strategy).__name__}: expected a multiple of {replicas} (each replica takes "
                              "an equal share of every minibatch)")


def broadcast_from_chief(variables, strategy):
    """Gives every replica of every worker the chief's values of `variables` (after the chief alone has read a
    checkpoint): each replica contributes its value times [it is the chief's first replica], and the all-reduced sum
    is assigned everywhere."""
    numeric = (tf.float32, tf.float64, tf.int32, tf.int64)
    variables = [v for v in variables if tf.as_dtype(v.dtype) in numeric]
    chief = tf.constant(1.0 if is_chief(strategy) else 0.0, tf.float64)

    def local():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        first = tf.cast(tf.equal(replica, 0), tf.float64) * chief
        return [tf.cast(tf.convert_to_tensor(v), tf.float64) * first for v in variables]

    @tf.function
    def run():
        values = strategy.run(local)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in values]

    for variable, value in zip(variables, run()):
        variable.assign(tf.cast(value, variable.dtype))


def keep_freed_heap(environ=None) -> int | None:
    """Asks glibc's malloc to keep HEAP_TOP_PAD bytes (64 MiB) of freed memory at the top of each heap instead of
    handing it back to the system: `mallopt(M_TOP_PAD, pad)` with the mmap threshold fixed at glibc's maximum
    (`M_MMAP_THRESHOLD`, 32 MiB; without it a pad set after TensorFlow has started did not take). Process-wide, set
    once; returns the pad set, or None where nothing was changed.

    Under a strategy every update is several TensorFlow operations, and the XLA gradient's outputs (the VAE's: 6 MB
    per update) are fresh buffers from malloc. Freed, they empty a per-thread heap, which glibc unmaps at once (its
    default pad is 128 KiB), so the next update maps it again and takes a page fault on every 4 KiB it writes:
    ~1,100 faults per VAE update, 7.8 ms an update against 4.9 ms with the pad (`python -m bench.scaling`;
    bench/results/SPEED_NOTES.md, round 8). With the pad the pages stay mapped. The memory kept is at most the pad
    per heap, and only pages a run has already touched. Not done where the user set glibc's own MALLOC_TOP_PAD_ or
    MALLOC_ARENA_MAX, where TFRECOG_HEAP_TOP_PAD=0, or where the C library is not glibc. The one-device fused path
    does not need it (its updates stay inside one XLA computation).
    """
    global _heap_top_pad_set
    environ = os.environ if environ is None else environ
    if _heap_top_pad_set is not None:
        return _heap_top_pad_set
    text = environ.get("TFRECOG_HEAP_TOP_PAD", "").strip()
    try:
        pad = HEAP_TOP_PAD if not text else int(text)
    except ValueError:
        raise DistributeError(f"TFRECOG_HEAP_TOP_PAD={text!r}: expected a number of bytes (0: leave malloc "
                              "as it is)") from None
    if pad <= 0 or "MALLOC_TOP_PAD_" in environ or "MALLOC_ARENA_MAX" in environ:
        return None
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt
        done = mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_MMAP_THRESHOLD_MAX)) == 1 and mallopt(
            _M_TOP_PAD, ctypes.c_int(min(pad, 2**31 - 1))) == 1
    except (AttributeError, OSError):
        return None
    if not done:
        return None
    _heap_top_pad_set = pad
    return pad


def compile_optimizer_step(optimizer) -> bool:
    """Makes a Keras optimizer's step under a strategy one XLA computation per device instead of a few TensorFlow
    operations per variable; returns whether it was installed (once per optimizer).

    Keras's TensorFlow optimizer all-reduces the gradients, then (in a cross-replica merge) calls its
    `_distributed_tf_update_step`, which asks `strategy.extended.update` to run `update_step(g, w, rate)` (Adam:
    m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, w <- w - rate_t m / (sqrt(v) + eps)) on every device's copy of
    every variable, each as its own handful of operations. Replaced here on this optimizer instance by one
    `strategy.extended.update` whose function, on each device, runs the same `update_step` for all the variables in
    one `tf.function(jit_compile=True)` (one per variable list; called under each device's update context, it
    resolves every distributed variable to that device's copy): the same arithmetic in fewer launches
    (bench/results/SPEED_NOTES.md, round 8). Sparse gradients (`tf.IndexedSlices`) and an optimizer without that
    method keep Keras's own step.
    """
    if getattr(optimizer, "_tfrecog_compiled_step", False):
        return True
    keras_step = getattr(optimizer, "_distributed_tf_update_step", None)
    if keras_step is None or not hasattr(optimizer, "update_step"):
        return False
    compiled = {}

    def distributed_update_step(distribution, grads_and_vars, learning_rate):
        grads_and_vars = list(grads_and_vars)
        if not grads_and_vars or any(isinstance(g, tf.IndexedSlices) for g, _ in grads_and_vars):
            return keras_step(distribution, grads_and_vars, learning_rate)
        variables = [v for _, v in grads_and_vars]
        key = tuple(id(v) for v in variables)

        def on_device(_device_copy, rate, *grads):
            step = compiled.get(key)
            if step is None:
                def step_all(rate, grads):
                    for grad, variable in zip(grads, variables):
                        optimizer.update_step(grad, variable, rate)
                    return tf.constant(True)

                step = compiled[key] = tf.function(step_all, jit_compile=True)
            return step(rate, list(grads))

        rate = tf.convert_to_tensor(learning_rate)
        distribution.extended.update(variables[0], on_device, args=(rate, *(g for g, _ in grads_and_vars)),
                                     group=False)

    optimizer._distributed_tf_update_step = distributed_update_step
    optimizer._tfrecog_compiled_step = True
    return True

