"""Which ranking mode makes the best top-10? NDCG@10 / Recall@10 of every mode of
``aerec.recommend.ranking`` on new-user holdouts, with the popularity baseline beside them.

    python benchmarks/bench_ranking.py                     # all datasets, ~5 minutes on 2 cores
    python benchmarks/bench_ranking.py --datasets ml100k --epochs 10

Datasets (prepared and trained once, cached under ``--work``, default ``bench-data/ranking``):

``demo``       ``aerec data synth --shape demo`` (6,000 users × 1,000 movies, 600k ratings),
               ``user`` protocol (20 % of users held out; half of each one's ratings given,
               half scored);
``ml100k``     ``/work/shared/data/ml-100k/u.data`` (or ``--ml100k DIR``), ``user`` protocol;
``ml100k-u1``  MovieLens ``u1.base`` / ``u1.test`` (the ``fixed`` protocol: known users, all
               their training ratings as input) — reported, not used to choose.

Each model is the ``seed`` architecture (512-256-64, ReLU, dropout 0.1) trained with the trainer
API for ``--epochs`` epochs at ``--lr`` (default 1e-3; the published 1e-4 needs far more epochs).
Scores come from :func:`aerec.evaluate.evaluate_models` (movies the user gave are excluded;
a held-out rating ≥ 4 is relevant).

The ``head`` row is the model's own ranking head (:mod:`aerec.model.ranked`: EASE on what the
user rated plus α × predicted rating, λ and α chosen on the validation split by
:func:`aerec.train.finish.choose_ranking`, EASE fitted on training + validation ratings) —
attached to the trained model here exactly as training with ``ranking = "ease"`` does.

Choosing without peeking: under the ``user`` protocol the held-out users are split in two
halves by a seeded permutation. The default mode is the one with the best mean NDCG@10 over the
*selection* halves of ``demo`` and ``ml100k`` (near-ties within :data:`TOLERANCE` going to the
smaller parameter of the same family); the tables report the other (*report*) halves.
Prints Markdown for docs/ranking.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from aerec.config import TrainConfig  # noqa: E402
from aerec.data.splits import make_splits, select, union_rows  # noqa: E402
from aerec.data.store import load_dataset  # noqa: E402
from aerec.evaluate import evaluate_models  # noqa: E402
from aerec.model.baselines import Popularity  # noqa: E402
from aerec.recommend.ranking import Ranking, parse_ranking  # noqa: E402
from aerec.train import load_checkpoint, train  # noqa: E402

#: The grid of modes measured (parameters fixed in advance, not tuned on the report halves).
MODES = [
    "predicted",
    "damped:5", "damped:20", "damped:50", "damped:200", "damped:1000", "damped:5000",
    "lcb:0.1", "lcb:0.25", "lcb:0.5", "lcb:1",
    "blend:0.1", "blend:0.25", "blend:0.5", "blend:1", "blend:2", "blend:3", "blend:5",
]
DATASETS = ("demo", "ml100k", "ml100k-u1")
#: NDCG@10 differences below this are treated as ties when choosing the default (the selection
#: halves hold ~100–550 users; their NDCG@10 moves by more than this between random halves).
TOLERANCE = 0.005
SELECTION_DATASETS = ("demo", "ml100k")


class _Predictions:
    """The model's predicted ratings ``predict_known`` for the current batch, computed once
    and shared by every mode (evaluate_models asks each model of the table in turn)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self._key: bytes | None = None
        self._out: np.ndarray | None = None

    def __call__(self, user_rows, indptr, indices, values) -> np.ndarray:
        key = np.asarray(user_rows).tobytes()
        if key != self._key:
            self._out = self.model.predict_known(user_rows, indptr, indices, values)
            self._out = self._out.detach().float().cpu().numpy()
            self._key = key
        return self._out  # type: ignore[return-value]


class _RankingOnly:
    """What :func:`aerec.evaluate.evaluate_models` asks of a model that only ranks: its
    scores for a batch of known users (``predict_known``), no ranking head."""

    predicts_ratings = False
    ranks_items = True
    has_ranking_head = False


class HeadScorer(_RankingOnly):
    """A model's own ranking head (``rank_dense``, e.g. EASE + α·rating); movies without
    training ratings are never ranked, as in every mode."""

    label = "head"

    def __init__(self, model: torch.nn.Module, counts: np.ndarray) -> None:
        self.model = model
        self.unseen = np.asarray(counts) == 0

    def predict_known(self, user_rows, indptr, indices, values) -> torch.Tensor:
        scores = self.model.rank_dense(indptr, indices, values).float()
        scores[:, torch.from_numpy(self.unseen)] = -torch.inf
        return scores


class ModeScorer(_RankingOnly):
    """A ranking mode of :mod:`aerec.recommend.ranking` over the model's predictions."""

    def __init__(self, ranking: Ranking, predictions: _Predictions, counts: np.ndarray,
                 scale_range: float) -> None:
        self.ranking = ranking
        self.label = ranking.label
        self.predictions = predictions
        self.counts = counts
        self.scale_range = scale_range

    def predict_known(self, user_rows, indptr, indices, values) -> torch.Tensor:
        predicted = self.predictions(user_rows, indptr, indices, values)
        return torch.as_tensor(self.ranking.scores(predicted, self.counts, self.scale_range))


def _run(cmd: list[str]) -> None:
    import subprocess

    subprocess.run([sys.executable, "-m", "aerec", *cmd], check=True, cwd=REPO)


def prepare(name: str, work: Path, ml100k: Path) -> Path:
    """The prepared dataset of ``name`` (created on first use)."""
    out = work / f"{name}-ds"
    if (out / "manifest.json").is_file():
        return out
    if name == "demo":
        raw = work / "demo-raw"
        if not (raw / "combined_data_1.txt").is_file():
            _run(["data", "synth", "--out", str(raw), "--shape", "demo"])
        _run(["data", "prepare", str(raw / "combined_data_1.txt"), "--out", str(out)])
    elif name == "ml100k":
        _run(["data", "prepare", str(ml100k / "u.data"), "--out", str(out)])
    elif name == "ml100k-u1":
        _run(["data", "prepare", str(ml100k / "u1.base"), "--test", str(ml100k / "u1.test"),
              "--out", str(out)])
    else:
        raise SystemExit(f"unknown dataset {name}")
    return out


def trained(name: str, data: Path, work: Path, args: argparse.Namespace) -> tuple[Path, float]:
    """Run directory of the dataset's model (trained on first use) and training seconds."""
    run = work / f"{name}-run-e{args.epochs}"
    if (run / "best.pt").is_file():
        return run, float("nan")
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, threads=args.threads, seed=0,
        split_protocol="fixed" if name.endswith("-u1") else "user",
        test_fraction=0.2, holdout_fraction=0.5, validation_fraction=0.1,
    )
    result = train(data, run, config)
    return run, result.seconds


def halves(test: sp.csr_matrix, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The test ratings of a seeded half of the test users, and of the other half."""
    users = np.flatnonzero(np.diff(test.indptr))
    chosen = np.random.default_rng([seed, 7]).permutation(users)[: len(users) // 2]
    in_first = np.zeros(test.shape[0], bool)
    in_first[chosen] = True
    entry_first = np.repeat(in_first, np.diff(test.indptr))
    return select(test, entry_first), select(test, ~entry_first)


def measure(name: str, run: Path, data: Path) -> dict:
    ckpt = load_checkpoint(run / "best.pt")
    ds = load_dataset(data)
    splits = make_splits(ds, **ckpt.split)
    scale = ds.scale
    predictions = _Predictions(ckpt.model)
    counts = ckpt.stats.movie_counts
    scorers = [ModeScorer(parse_ranking(m), predictions, counts, scale.maximum - scale.minimum)
               for m in MODES]
    fit_on = union_rows(splits.train, splits.validation, splits.test_input) if (
        splits.protocol == "user") else splits.test_input
    scorers.append(Popularity(relevance_threshold=scale.relevance_threshold()).fit(fit_on))
    # the model's ranking head (aerec.model.ranked): the checkpoint's own, or an EASE head
    # chosen on the validation split and attached to this model, as `ranking = "ease"` does
    head_notes = {}
    model = ckpt.model
    if not model.has_ranking_head:
        from aerec.train.finish import choose_ranking, with_ranking

        lam, alpha, _ = choose_ranking(ckpt.config, model, splits.train, splits.validation,
                                       scale.relevance_threshold())
        model = with_ranking(model, union_rows(splits.train, splits.validation), lam, alpha)
        head_notes = {"ease_lambda": lam, "rating_weight": alpha}
    scorers.append(HeadScorer(model, counts))
    parts = {"all": splits.test}
    if splits.protocol == "user":
        parts["selection"], parts["report"] = halves(splits.test)
    out = {"protocol": splits.protocol, "best_val_rmse": ckpt.best.get("val_rmse"),
           "epochs": ckpt.epoch, "parts": {}, "head": head_notes}
    for part, test in parts.items():
        results = evaluate_models(scorers, test=test, inputs=splits.test_input, scale=scale, k=10)
        out["parts"][part] = {
            "users": results[0].ranked_users,
            "rows": {r.name: {"ndcg": r.ndcg, "recall": r.recall, "precision": r.precision}
                     for r in results},
        }
    # the raw autoencoder's rating error under this protocol, for context
    rmse = evaluate_models([ckpt.model], test=splits.test,
                           inputs=splits.test_input, scale=scale, k=10)[0]
    out["test_rmse"] = rmse.rmse
    return out


def choose(mean_ndcg: dict[str, float]) -> str:
    """The mode with the best mean selection NDCG@10; among modes of the best one's family
    within :data:`TOLERANCE` of it, the one with the smallest parameter (the least shrinkage or
    popularity weight, i.e. the most personal list)."""
    best = max(mean_ndcg, key=lambda m: mean_ndcg[m])
    family = best.partition(":")[0]
    for mode in MODES:  # within a family, MODES lists parameters in increasing order
        if mode.partition(":")[0] == family and mean_ndcg[mode] >= mean_ndcg[best] - TOLERANCE:
            return mode
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "bench-data" / "ranking")
    parser.add_argument("--ml100k", type=Path, default=REPO.parent / "shared" / "data" / "ml-100k")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.datasets.split(",") if n]
    results: dict[str, dict] = {}
    began = time.perf_counter()
    for name in names:
        data = prepare(name, args.work, args.ml100k)
        run, seconds = trained(name, data, args.work, args)
        results[name] = measure(name, run, data)
        results[name]["train_seconds"] = seconds
        print(f"[{name}] done ({time.perf_counter() - began:.0f} s so far)", file=sys.stderr)

    chosen_from = [n for n in SELECTION_DATASETS if n in results]
    mean_sel = {
        m: float(np.mean([results[n]["parts"]["selection"]["rows"][m]["ndcg"]
                          for n in chosen_from]))
        for m in MODES
    } if chosen_from else {}
    best = choose(mean_sel) if mean_sel else None

    print(f"\nMachine: {platform.machine()}, {args.threads} torch threads; "
          f"epochs {args.epochs}, lr {args.lr:g}; total {time.perf_counter() - began:.0f} s\n")
    for name in names:
        r = results[name]
        part = "report" if "report" in r["parts"] else "all"
        rows = r["parts"][part]["rows"]
        print(f"### {name} ({r['protocol']} protocol; {part} users: "
              f"{r['parts'][part]['users']}; best val RMSE {r['best_val_rmse']:.4f}, "
              f"fold-in test RMSE {r['test_rmse']:.4f})\n")
        sel = r["parts"].get("selection", {}).get("rows")
        head = "| ranking | NDCG@10 | Recall@10 | Precision@10 |"
        head += " NDCG@10 (selection half) |" if sel else ""
        print(head)
        print("|---|---:|---:|---:|" + ("---:|" if sel else ""))
        for m in [*MODES, "head", "popularity"]:
            v = rows[m]
            mark = " **(default)**" if m == best else ""
            line = f"| {m}{mark} | {v['ndcg']:.4f} | {v['recall']:.4f} | {v['precision']:.4f} |"
            if sel:
                line += f" {sel[m]['ndcg']:.4f} |"
            print(line)
        print()
    if best is not None:
        top = max(mean_sel, key=lambda m: mean_sel[m])
        popular = np.mean([results[n]["parts"]["selection"]["rows"]["popularity"]["ndcg"]
                           for n in chosen_from])
        print(f"Mean NDCG@10 on the selection halves of {', '.join(chosen_from)}: best {top} "
              f"({mean_sel[top]:.4f}); chosen (least popularity weight within {TOLERANCE}): "
              f"**{best}** ({mean_sel[best]:.4f}); predicted {mean_sel['predicted']:.4f}; "
              f"popularity baseline {popular:.4f}")
        head = np.mean([results[n]["parts"]["selection"]["rows"]["head"]["ndcg"]
                        for n in chosen_from])
        print(f"The model's ranking head (EASE + α·rating, chosen on validation): {head:.4f} — "
              f"{'better' if head > mean_sel[best] + TOLERANCE else 'not better'} than {best}")
        from aerec.recommend.ranking import DEFAULT_RANKING

        print(f"aerec's defaults: 'head' for models with a ranking head, else "
              f"{parse_ranking(DEFAULT_RANKING).label}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "selection_mean_ndcg": mean_sel,
                                         "best": best}, indent=1, default=float))


if __name__ == "__main__":
    main()
