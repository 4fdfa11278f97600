"""Regenerate tests/reference/torch_values.npz: small float64 reference values computed by PyTorch,
so that parity with PyTorch is checked in every test run, torch installed or not
(tests/test_torch_reference.py; where torch is installed it also checks that this script still
produces the stored file, to 1e-12).

Usage (where torch is installed), from the repository root:

    python tests/reference/make_torch_reference.py

What is stored (every input too, so the tests need neither torch nor this script's random draws):
- ``loss/<case>/{z,y,loss,grad}``: F.cross_entropy (integer labels and probability rows) and
  F.binary_cross_entropy_with_logits (sum over outputs / rows, as gpubackprop's loss) on fixed logits.
- ``net/<loss>/{X,Y,param_i,loss,grad_i}``: a 5-7-4 tanh network's loss and autograd gradients.
- ``optim/<config>/<loss>/{param0_i,X,Y,loss,param_i,state_j}``: STEPS steps of torch.optim on a
  5-8-3 tanh network from fixed parameters; per-step losses, final parameters and optimizer state.
- ``sigmoid/{z,value}``: torch.sigmoid over [-700, 700] (float64).
"""
import pathlib
import sys

import numpy

PATH = pathlib.Path(__file__).with_name("torch_values.npz")
SEED = 20261129
STEPS, BATCH, LR, SIZES = 5, 8, 0.05, (5, 8, 3)
# (id, gpubackprop optimizer name, its keywords, torch.optim keywords): as tests/test_optimizers.py.
OPTIMIZER_CONFIGS = [
    ("sgd", "sgd", {}, {}),
    ("sgd-wd", "sgd", {"weight_decay": 0.05}, {"weight_decay": 0.05}),
    ("momentum", "momentum", {"momentum": 0.9}, {"momentum": 0.9}),
    ("nesterov", "momentum", {"momentum": 0.8, "nesterov": True}, {"momentum": 0.8, "nesterov": True}),
    ("momentum-wd", "momentum", {"momentum": 0.9, "weight_decay": 0.01}, {"momentum": 0.9, "weight_decay": 0.01}),
    ("adam", "adam", {}, {}),
    ("adam-betas", "adam", {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6}, {"betas": (0.8, 0.99), "eps": 1e-6}),
    ("adam-wd", "adam", {"weight_decay": 0.1}, {"weight_decay": 0.1}),
]
LOSS_CASES = [("softmax_labels", (7, 5)), ("softmax_probabilities", (7, 5)), ("softmax_unnormalised", (6, 4)),
              ("bce", (16, 5)), ("bce_one", (9, 1))]
OPTIM_LOSSES = ("mse", "softmax_cross_entropy")


def inputs():
    """Every input, drawn once from SEED: {key: array}."""
    rng = numpy.random.default_rng(SEED)
    out = {}
    for case, (rows, cols) in LOSS_CASES:
        if case.startswith("softmax"):
            out[f"loss/{case}/z"] = rng.normal(0, 3, (rows, cols))
            out[f"loss/{case}/y"] = {"softmax_labels": lambda: rng.integers(0, cols, rows),
                                     "softmax_probabilities": lambda: rng.dirichlet(numpy.ones(cols), rows),
                                     "softmax_unnormalised": lambda: rng.uniform(0, 1, (rows, cols))}[case]()
        else:
            out[f"loss/{case}/z"] = rng.normal(0, 4, (rows, cols))
            y = rng.uniform(0, 1, (rows, cols))
            y[0] = numpy.round(y[0])  # hard 0/1 targets too
            out[f"loss/{case}/y"] = y
    for loss in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
        sizes = (5, 7, 4)
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            out[f"net/{loss}/param_{2 * i}"] = rng.normal(0, 0.5, (n_out, n_in))
            out[f"net/{loss}/param_{2 * i + 1}"] = rng.normal(0, 0.1, n_out)
        out[f"net/{loss}/X"] = rng.normal(size=(11, 5))
        out[f"net/{loss}/Y"] = (rng.integers(0, 4, 11) if loss == "softmax_cross_entropy"
                                else rng.uniform(0, 1, (11, 4)))
    for config, *_ in OPTIMIZER_CONFIGS:
        for loss in OPTIM_LOSSES:
            key = f"optim/{config}/{loss}"
            for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
                out[f"{key}/param0_{2 * i}"] = rng.normal(0, 0.5, (n_out, n_in))
                out[f"{key}/param0_{2 * i + 1}"] = rng.normal(0, 0.1, n_out)
            out[f"{key}/X"] = rng.normal(size=(STEPS, BATCH, SIZES[0]))
            out[f"{key}/Y"] = (rng.integers(0, SIZES[-1], (STEPS, BATCH)) if loss == "softmax_cross_entropy"
                               else rng.normal(size=(STEPS, BATCH, SIZES[-1])))
    out["sigmoid/z"] = numpy.concatenate([numpy.linspace(-700, 700, 1401), [-745.0, -740.0, -720.0, 0.0, 40.0]])
    return out


def compute():
    """inputs() and PyTorch's values on them: {key: float64 (labels: int64) array}."""
    import torch

    F = torch.nn.functional
    t = torch.tensor
    out = inputs()
    for case, _ in LOSS_CASES:
        z = t(out[f"loss/{case}/z"], requires_grad=True)
        y = t(out[f"loss/{case}/y"])
        loss = F.cross_entropy(z, y) if case.startswith("softmax") else \
            F.binary_cross_entropy_with_logits(z, y, reduction="sum") / z.shape[0]
        loss.backward()
        out[f"loss/{case}/loss"], out[f"loss/{case}/grad"] = numpy.float64(loss.item()), z.grad.numpy()
    for loss in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
        key = f"net/{loss}"
        params = [t(out[f"{key}/param_{i}"], requires_grad=True) for i in range(4)]
        z = F.linear(torch.tanh(F.linear(t(out[f"{key}/X"]), params[0], params[1])), params[2], params[3])
        Y = t(out[f"{key}/Y"])
        ref = F.cross_entropy(z, Y) if loss == "softmax_cross_entropy" else \
            F.binary_cross_entropy_with_logits(z, Y, reduction="sum") / z.shape[0]
        ref.backward()
        out[f"{key}/loss"] = numpy.float64(ref.item())
        for i, p in enumerate(params):
            out[f"{key}/grad_{i}"] = p.grad.numpy()
    for config, name, _, options in OPTIMIZER_CONFIGS:
        for loss in OPTIM_LOSSES:
            key = f"optim/{config}/{loss}"
            params = [t(out[f"{key}/param0_{i}"], requires_grad=True) for i in range(4)]
            opt = (torch.optim.Adam if name == "adam" else torch.optim.SGD)(params, lr=LR, **options)
            losses = []
            for step in range(STEPS):
                opt.zero_grad()
                X, Y = t(out[f"{key}/X"][step]), t(out[f"{key}/Y"][step])
                z = F.linear(torch.tanh(F.linear(X, params[0], params[1])), params[2], params[3])
                ref = 0.5 * ((z - Y) ** 2).sum() / BATCH if loss == "mse" else F.cross_entropy(z, Y)
                ref.backward()
                opt.step()
                losses.append(ref.item())
            out[f"{key}/loss"] = numpy.array(losses)
            for i, p in enumerate(params):
                out[f"{key}/param_{i}"] = p.detach().numpy().copy()
            names = ("exp_avg", "exp_avg_sq") if name == "adam" else ("momentum_buffer",) if "momentum" in options else ()
            for j, state in enumerate(names):  # flattened in parameter order, as get_optimizer_state()["buffers"]
                out[f"{key}/state_{j}"] = numpy.concatenate([opt.state[p][state].numpy().ravel() for p in params])
    out["sigmoid/value"] = torch.sigmoid(t(out["sigmoid/z"])).numpy()
    out["torch_version"] = numpy.array(torch.__version__)
    return out


def main(argv):
    path = pathlib.Path(argv[1]) if len(argv) > 1 else PATH
    values = compute()
    numpy.savez_compressed(path, **values)
    print(f"wrote {path}: {len(values)} arrays (torch {values['torch_version']})")


if __name__ == "__main__":
    main(sys.argv)
