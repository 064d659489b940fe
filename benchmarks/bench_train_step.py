"""One training step of the `seed` network, sparse (aerec) against dense, in the same process.

    python benchmarks/bench_train_step.py THREADS

Batch of 128 synthetic users with ~51 ratings each over 4,499 movies (the Netflix-quarter
averages). Prints the median milliseconds of: the full sparse step as the trainer takes it
(forward, masked loss, backward with the big matrices' row gradients deferred, ``RowAdam``), its
forward+backward alone, and the full step of a plain dense ``nn.Sequential`` of the same network
with masked MSE and ``torch.optim.Adam`` (rows densified outside the timer).
A quick, dataset-free complement to ``bench_train.py`` for quiet-machine checks.
"""

import sys
import time

import numpy as np
import torch

from aerec.config import TrainConfig
from aerec.model.sparse_rows import SparseRows
from aerec.train.trainer import build_model, make_optimizer

torch.set_num_threads(int(sys.argv[1]))
nm = 4499
B = 128
rng = np.random.default_rng(0)
cfg = TrainConfig()
model = build_model(cfg, nm)
model.train()
opt = make_optimizer(cfg, model.parameters())
batches = []
for _ in range(20):
    counts = np.minimum(rng.geometric(1 / 51, B), nm)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate([np.sort(rng.choice(nm, c, replace=False)) for c in counts])
    values = rng.integers(1, 6, len(indices)).astype(np.float32)
    batches.append(SparseRows.from_arrays(indptr, indices, values, nm))


def step(b, do_opt=True):
    p = model(b)
    loss = torch.mean((p - b.values) ** 2)
    loss.item()
    opt.zero_grad(set_to_none=True)
    with opt.deferring():  # as the trainer does: RowAdam takes the big matrices' row gradients
        loss.backward()
    if do_opt:
        opt.step()


for b in batches[:5]:
    step(b)
for name, f in [
    ("full", lambda b: step(b)),
    ("fwd+bwd", lambda b: step(b, False)),
]:
    ts = []
    for b in batches * 3:
        t = time.perf_counter()
        f(b)
        ts.append(time.perf_counter() - t)
    print(name, "median ms %.2f" % (1000 * np.median(ts)))
# dense reference
lin = [
    torch.nn.Linear(a, b)
    for a, b in [(nm, 512), (512, 256), (256, 64), (64, 256), (256, 512), (512, nm)]
]
dm = torch.nn.Sequential(*sum([[layer, torch.nn.ReLU()] for layer in lin], []))
dopt = torch.optim.Adam(dm.parameters(), lr=1e-4, weight_decay=1e-5)
X = torch.zeros(B, nm)
ts = []
for b in batches * 2:
    X.zero_()
    r = torch.repeat_interleave(torch.arange(B), b.indptr.diff())
    X[r, b.indices] = b.values
    t = time.perf_counter()
    out = dm(X)
    m = X > 0
    loss = ((out - X)[m] ** 2).mean()
    dopt.zero_grad()
    loss.backward()
    dopt.step()
    ts.append(time.perf_counter() - t)
print("dense median ms %.2f" % (1000 * np.median(ts)))
