"""One training run's epochs: the loop over batches, validation, the learning
rate, early stopping, checkpoints and the best model.

The loss is ANI's squared error scaled by atom count; validation RMSE drives the
learning rate and early stopping (or a cosine schedule spans the time given);
checkpoints make `--resume` land where an uninterrupted run would have been. An
ensemble's members share every batch and are computed together; each keeps its
own best epoch and stops on its own validation (its own fold of the training
split with `ensemble_folds`); the run stops when all have.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from aevpipe import keys, runs
from aevpipe.config import TrainSettings
from aevpipe.distributed import World, all_max
from aevpipe.errors import RunError
from aevpipe.loader import ShardLoader
from aevpipe.metrics import ErrorSums
from aevpipe.model import ElementEnsemble
from aevpipe.objective import (
    Evaluation,
    build_optimizer,
    evaluate,
    fold_mask,
    loss_fn,
)
from aevpipe.sae import fit_self_energies
from aevpipe.store import ShardStore

TRAIN, VALID = keys.SPLIT_CODES["train"], keys.SPLIT_CODES["valid"]

# A checkpoint writes a few MB (model and optimiser): on short epochs, taking one
# every epoch would be a large share of the run. One is taken once the time since
# the last is CHECKPOINT_SPACING times what that one took (so checkpoints cost at
# most about 1% of the run, and come every epoch once epochs take a few seconds),
# and at the end. --resume repeats the epochs after the last checkpoint.
CHECKPOINT_SPACING = 100


class Trainer:
    """One training run in one process (one rank of several under DDP)."""

    def __init__(
        self,
        store: ShardStore,
        run: Path,
        settings: TrainSettings,
        device: torch.device,
        world: World,
        progress: bool,
        echo: Callable[[str], None],
        on_batch: Callable[[int, int], None] | None,
    ):
        self.store, self.run, self.settings = store, run, settings
        self.device, self.world = device, world
        self.progress = progress and world.is_main
        self.echo = echo if world.is_main else (lambda *_: None)
        self.on_batch = on_batch
        torch.manual_seed(settings.seed)
        self.self_energies = fit_self_energies(store, TRAIN)
        self.sae = self.self_energies.values
        self.sae_t = torch.tensor(self.sae, dtype=torch.float64, device=device)
        self.members = settings.ensemble
        self.folds = settings.ensemble_folds
        self.model = ElementEnsemble(
            store.elements,
            store.aev.aev_length,
            settings.hidden,
            settings.activation,
            self.members,
        ).to(device)
        self.forward = self.model
        if world.distributed:
            # Not every element is in every batch: unused networks are expected.
            self.forward = DistributedDataParallel(
                self.model,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.optimizer = build_optimizer(self.model, settings)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=settings.lr_factor,
            patience=settings.lr_patience,
            threshold=0.0,
        )
        k = self.members
        self.state = {
            "epoch": 0,
            "best": [math.inf] * k,  # per member
            "best_epoch": [0] * k,
            "elapsed": 0.0,
        }
        # Each member's weights at its best epoch; best.pt is due when one changed.
        self.best: list[dict[str, torch.Tensor] | None] = [None] * k
        self.best_due = False
        self.saved_epoch = 0  # the epoch the checkpoint on disk holds
        self.checkpoint_due = 0.0  # perf_counter() time of the next checkpoint
        budget = settings.memory_limit
        share = {"rank": world.rank, "world_size": world.world_size}
        self.train_loader = ShardLoader(
            store,
            TRAIN,
            settings.batch_size,
            budget * 3 // 4,
            self.sae,
            shuffle=True,
            seed=settings.seed,
            **share,
        )
        self.valid_loader = ShardLoader(
            store,
            VALID,
            settings.valid_batch_size,
            budget // 4,
            self.sae,
            shuffle=False,
            **share,
        )

    def restore(self) -> None:
        """Continue from the run's checkpoint."""
        path = self.run / runs.CHECKPOINT
        ckpt = runs.load_tensors(path, self.device)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.state = {k: ckpt["state"][k] for k in self.state}
            self.saved_epoch = self.state["epoch"]
            best = runs.load_tensors(self.run / runs.BEST, self.device)
            self.best = list(best["members"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            reason = runs.first_line(exc)
            raise RunError(f"{path}: not a checkpoint of this run ({reason})") from None
        if self.world.is_main:
            # History is appended before each checkpoint: fewer lines is damage.
            kept = len(runs.read_history(self.run))
            if kept < self.state["epoch"]:
                raise RunError(
                    f"{self.run / runs.HISTORY}: {kept} epochs, the checkpoint has "
                    f"{self.state['epoch']}: damaged"
                )
            runs.truncate_history(self.run, self.state["epoch"])
        self.echo(f"resuming {self.run} after epoch {self.state['epoch']}")

    def model_payload(self) -> dict[str, Any]:
        """best.pt: the model with everything needed to use it."""
        return {
            "elements": list(self.store.elements),
            "aev": self.store.aev.to_dict(),
            "hidden": {k: list(v) for k, v in self.settings.hidden.items()},
            "activation": self.settings.activation,
            "self_energies": self.sae.tolist(),
            "self_energy_fit": self.self_energies.to_dict(),
            "members": list(self.best),
            "member_epochs": list(self.state["best_epoch"]),
            "epoch": self.state["epoch"],
        }

    def train_epoch(self, epoch: int, t0: float) -> tuple[ErrorSums, bool]:
        """One pass over this rank's training share; True when time ran out."""
        s = self.settings
        self.model.train()
        sums = ErrorSums(self.device)
        timed_out = False
        # Ranks' shares differ in batches: join lets the early ones wait.
        join = (
            self.forward.join() if self.world.distributed else contextlib.nullcontext()
        )
        with (
            join,
            tqdm(
                total=len(self.train_loader),
                unit="conf",
                unit_scale=True,
                leave=False,
                disable=not self.progress,
                desc=f"epoch {epoch}",
                dynamic_ncols=True,
            ) as bar,
        ):
            for i, batch in enumerate(self.train_loader.epoch(epoch)):
                b = batch.to(self.device)
                predicted = self.forward(b.aev, b.conf, b.size)  # (members, B)
                # With folds, member i does not train on fold i.
                mask = (
                    ~fold_mask(batch, self.members, self.device) if self.folds else None
                )
                loss = loss_fn(predicted, b.target, b.n_atoms, mask)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                mean = predicted.detach().double().mean(0)
                sums.add(mean + b.counts @ self.sae_t, b.energy)
                if self.on_batch is not None:
                    self.on_batch(epoch, i)
                if self.progress:
                    bar.update(b.size)
                    if i % 50 == 0:  # the epoch's training RMSE so far
                        rmse = sums.result()["rmse_kcal_mol"]
                        bar.set_postfix_str(f"train RMSE {rmse:.3f} kcal/mol")
                spent = self.state["elapsed"] + time.perf_counter() - t0
                if s.max_time and spent >= s.max_time:
                    timed_out = True
                    break
        return sums, timed_out

    def fit(self) -> str:
        """Epochs until a stopping rule holds; returns the rule."""
        state = self.state
        last_print = 0.0
        # Checked first too: a resumed run that had stopped stops again.
        while (reason := self.stop_reason()) is None:
            epoch = state["epoch"] + 1
            if self.settings.lr_schedule == "cosine":
                self._set_lr(cosine_lr(self.settings, state["elapsed"]))
            t0 = time.perf_counter()
            train_sums, timed_out = self.train_epoch(epoch, t0)
            valid = evaluate(self.model, self.valid_loader, self.device, self.sae_t)
            tr = train_sums.reduce().result()
            va = valid.reduce().ensemble.result()
            scored = self.member_scores(valid)
            # Every rank takes the same decisions: the slowest clock, any time-out.
            seconds = all_max(time.perf_counter() - t0, self.device)
            timed_out = all_max(float(timed_out), self.device) > 0
            state["elapsed"] += seconds
            # Each member's score, and all members' pooled for the plateau
            # schedule; without validation data, the training error.
            scores = [r["rmse_kcal_mol"] for r in scored.members()]
            pooled = scored.result()["rmse_kcal_mol"]
            if not scored.result()["n"]:
                scores = [tr["rmse_kcal_mol"]] * self.members
                pooled = tr["rmse_kcal_mol"]
            lr = self.optimizer.param_groups[0]["lr"]
            improved = [
                not self.stopped(k) and score < state["best"][k]
                for k, score in enumerate(scores)
            ]
            state["epoch"] = epoch
            for k in range(self.members):
                if improved[k]:
                    state["best"][k], state["best_epoch"][k] = scores[k], epoch
                    self.best[k] = self.model.member(k).state_dict()
                    self.best_due = True
            if self.settings.lr_schedule == "plateau":
                self.scheduler.step(pooled)
            record = {
                "epoch": epoch,
                "train_rmse_kcal_mol": tr["rmse_kcal_mol"],
                "train_mae_kcal_mol": tr["mae_kcal_mol"],
                "valid_rmse_kcal_mol": va["rmse_kcal_mol"],
                "valid_mae_kcal_mol": va["mae_kcal_mol"],
                "lr": lr,
                "conformations_per_s": tr["n"] / seconds,
                "epoch_seconds": seconds,
                "elapsed_s": state["elapsed"],
            }
            if self.members > 1:  # with folds, each on its own fold
                record["member_valid_rmse_kcal_mol"] = scores
            if self.world.is_main:
                runs.append_history(self.run, record)
                if time.perf_counter() >= self.checkpoint_due:
                    self.save()
            now = time.perf_counter()
            if any(improved) or now - last_print > 2.0 or epoch == 1:
                last_print = now
                self.echo(
                    f"epoch {epoch:5d}  RMSE train {tr['rmse_kcal_mol']:8.3f}  valid "
                    f"{va['rmse_kcal_mol']:8.3f} kcal/mol  lr {lr:.1e}  "
                    f"{record['conformations_per_s']:,.0f} conf/s  "
                    f"{state['elapsed']:.0f} s" + ("  *" if any(improved) else "")
                )
            if timed_out:
                reason = "max time"
                break
        if self.world.is_main:
            self.save()
        return reason

    def member_scores(self, valid: Evaluation) -> ErrorSums:
        """Each member's validation errors: on the validation split, or with
        folds on its own fold of the training split (a pass over it)."""
        if not self.folds:
            return valid.members
        own = evaluate(
            self.model, self.train_loader, self.device, self.sae_t, folds=True
        )
        return own.reduce().members

    def stopped(self, k: int) -> bool:
        """Whether member k has stopped early: its best epoch is final."""
        s, state = self.settings, self.state
        stalled = state["epoch"] - state["best_epoch"][k]
        return (
            bool(s.early_stop)
            and s.lr_schedule != "cosine"
            and (stalled >= s.early_stop)
        )

    def stop_reason(self) -> str | None:
        """The stopping rule that holds after the epochs so far, or None."""
        s, state = self.settings, self.state
        if s.max_time and state["elapsed"] >= s.max_time:
            return "max time"
        if state["epoch"] and all(self.stopped(k) for k in range(self.members)):
            return f"no better validation in {s.early_stop} epochs"
        lr = self.optimizer.param_groups[0]["lr"]
        if s.lr_schedule == "plateau" and lr < s.min_lr:
            return "learning rate below min-lr"
        if state["epoch"] >= s.max_epochs:
            return "max epochs"
        return None

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def save(self) -> None:
        """Write the best model, if it changed, then the checkpoint, unless the
        last epoch is saved already; the next one is due after CHECKPOINT_SPACING
        times what this one took."""
        if self.saved_epoch == self.state["epoch"]:
            return
        t0 = time.perf_counter()
        if self.best_due:
            runs.save_torch(self.run / runs.BEST, self.model_payload())
            self.best_due = False
        runs.save_torch(
            self.run / runs.CHECKPOINT,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "state": dict(self.state),
            },
        )
        self.saved_epoch = self.state["epoch"]
        now = time.perf_counter()
        self.checkpoint_due = now + CHECKPOINT_SPACING * (now - t0)


def cosine_lr(s: TrainSettings, elapsed: float) -> float:
    """The cosine schedule's learning rate after `elapsed` seconds of training.

    Set once per epoch from the clock every rank agrees on, so DDP ranks step
    with the same rate and a resumed run continues the same curve.
    """
    done = min(1.0, elapsed / s.max_time)
    return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1.0 + math.cos(math.pi * done))
