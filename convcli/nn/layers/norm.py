"""Normalization and regularization: BatchNorm1d/2d (and their Lazy* twins), Dropout."""

from __future__ import annotations

from convcli.nn.layers.base import Layer, Shape, flag, functional, number, numpy, positive_int, shape_text


class _BatchNorm(Layer):
    """Weight/bias are parameters, running statistics are buffers (as PyTorch). Training uses the
    batch's statistics, evaluation the running ones."""

    kind = "bn"
    ndim = 2

    def __init__(self, num_features: int | None, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.num_features = None if num_features is None else positive_int(num_features, "num_features")
        self.eps = number(eps, "eps", low=0)
        self.momentum = None if momentum is None else number(momentum, "momentum", 0, 1)
        self.affine = flag(affine, "affine")
        self.track_running_stats = flag(track_running_stats, "track_running_stats")

    def resolve(self, input_shape: Shape) -> None:
        kind = type(self).__name__
        allowed = (1, 2) if self.ndim == 1 else (3,)
        if len(input_shape) not in allowed:
            want = "(C) or (C, L)" if self.ndim == 1 else "(C, H, W)"
            raise ValueError(f"{kind} needs a {want} input, got shape {shape_text(input_shape)}")
        channels = input_shape[0]
        if self.num_features is None:
            self.num_features = channels
        elif channels != self.num_features:
            raise ValueError(
                f"{kind} expects num_features={self.num_features} but its input has "
                f"{channels} channel{'s' * (channels != 1)} "
                f"(shape {shape_text(input_shape)})"
            )

    def param_shapes(self) -> dict[str, Shape]:
        if not self.affine:
            return {}
        return {"weight": (self.num_features,), "bias": (self.num_features,)}

    def buffer_shapes(self) -> dict[str, Shape]:
        if not self.track_running_stats:
            return {}
        c = self.num_features
        return {"running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}

    def params_formula(self) -> str:
        if not self.affine:
            return ""
        return f"2·C (γ, β) = 2·{self.num_features} = {self.num_params:,}"

    # --- training -------------------------------------------------------------------------
    supports_training = True

    def initial_param(self, name: str, shape: Shape, rng, scheme: str):
        np = numpy()
        return np.ones(shape) if name == "weight" else np.zeros(shape)

    def initial_buffer(self, name: str, shape: Shape, dtype: str):
        np = numpy()
        if name == "num_batches_tracked":
            return np.zeros(shape, dtype=np.int64)
        return np.ones(shape, dtype=dtype) if name == "running_var" else np.zeros(shape, dtype=dtype)

    def forward(self, x, training: bool = False):
        np = numpy()
        channels = self.num_features
        gamma = self.params.get("weight", np.ones(channels, dtype=x.dtype))
        beta = self.params.get("bias", np.zeros(channels, dtype=x.dtype))
        use_batch = training or not self.track_running_stats
        if self.track_running_stats:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
            if training:
                self.buffers["num_batches_tracked"] += 1
            # momentum=None: cumulative average, as PyTorch
            momentum = self.momentum if self.momentum is not None else \
                1.0 / int(self.buffers["num_batches_tracked"])
        else:
            mean, var, momentum = np.zeros(channels, x.dtype), np.ones(channels, x.dtype), 0.0
        y, self._cache = functional().batch_norm_forward(x, gamma, beta, mean, var, use_batch, momentum,
                                                         self.eps)
        return y

    def backward(self, dy, input_grad: bool = True):
        dx, dgamma, dbeta = functional().batch_norm_backward(dy, self._cache)
        self.grads = {"weight": dgamma, "bias": dbeta} if self.affine else {}
        return dx


class BatchNorm1d(_BatchNorm):
    """PyTorch's nn.BatchNorm1d: (N, C) or (N, C, L) batches."""

    ndim = 1


class BatchNorm2d(_BatchNorm):
    """PyTorch's nn.BatchNorm2d: (N, C, H, W) batches."""

    ndim = 2


class _LazyBatchNorm:
    """LazyBatchNorm*: PyTorch's signature without ``num_features``, taken from the input when built."""

    def __init__(self, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True) -> None:
        super().__init__(None, eps, momentum, affine, track_running_stats)


class LazyBatchNorm1d(_LazyBatchNorm, BatchNorm1d):
    """PyTorch's nn.LazyBatchNorm1d."""


class LazyBatchNorm2d(_LazyBatchNorm, BatchNorm2d):
    """PyTorch's nn.LazyBatchNorm2d."""


class Dropout(Layer):
    """PyTorch's nn.Dropout: inverted dropout while training, the identity in evaluation."""

    kind = "dropout"
    supports_training = True

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = number(p, "p", 0, 1)
        self.inplace = flag(inplace, "inplace")

    def forward(self, x, training: bool = False):
        y, self._cache = functional().dropout_forward(x, self.p, training, self.rng)
        return y

    def backward(self, dy, input_grad: bool = True):
        return functional().dropout_backward(dy, self._cache)
