"""Epoch runners: one epoch of ``fit`` on this process (``LocalEpochs``) or as one rank of a
data-parallel run (``DataParallelEpochs``), and the learning rates they feed the device.

A local epoch is a few launches of recorded work (``Steps.launch``: up to ``STEPS_PER_LAUNCH``
steps each, each gathering its batch at a cursor that lives on the device, training on it and
adding its loss to a device accumulator) and ONE host read at its end (``layouts.TOTALS``). A
recording backend (CUDA graphs) thus runs many steps per host round trip; on NumPy the same code
runs step by step, with the same arithmetic as ``train_step`` on the same batches. The permutation
is drawn on the host (the same batches on every backend for the same seed) and copied to the device
once per epoch. The last, partial batch of an epoch is used, with its own (cached) workspace size.
"""
from __future__ import annotations

import math
import time

import numpy

from .. import validation
from ..errors import NonFiniteLossError
from ..layouts import STEPS_PER_LAUNCH, TOTALS


class LearningRates:
    """The learning rate of each step: a number (written to the device once), or a schedule
    ``lr(step)`` over the network's accepted optimizer steps, whose next values are written to the
    device in one copy per launch (never a host round trip per step)."""

    def __init__(self, lr, net):
        self.params, self.dtype = net.steps.params, net.dtype
        self.schedule = lr if callable(lr) else None
        if self.schedule is None:
            self.constant = validation.check_lr(lr, self.dtype)
        else:
            self.step = self.params.steps_taken()  # one read, at the start of fit
            self.value(self.step)  # a schedule that gives a bad first value fails before any step

    def start(self):
        """At an epoch's start: a constant learning rate into every slot (written again each epoch,
        in case a callback's train_step wrote another one between epochs)."""
        if self.schedule is None:
            self.params.write_lrs([self.constant] * STEPS_PER_LAUNCH)

    def value(self, step) -> float:
        try:
            return validation.check_scheduled_lr(self.schedule(step), self.dtype)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"the lr schedule at step {step}: {exc}") from None

    def next(self, count: int):
        """Write the learning rates of the next ``count`` steps (a schedule only)."""
        if self.schedule is not None:
            self.params.write_lrs([self.value(self.step + i) for i in range(count)])
            self.step += count

    def describe(self):
        """What data-parallel ranks compare: the number, or the schedule's repr."""
        return self.constant if self.schedule is None else repr(self.schedule)


def launches(net, n, batch_size):
    """An epoch as launches of ``Steps.launch``: [(workspace, steps, rows done after it)]: the full
    batches in runs of at most STEPS_PER_LAUNCH steps, then the partial last batch (its own
    workspace size). Each distinct (workspace, steps) is recorded once and replayed."""
    full, partial = divmod(n, batch_size)
    runs, done = [], 0
    ws = net.steps.workspace(batch_size)
    for start in range(0, full, STEPS_PER_LAUNCH):
        steps = min(STEPS_PER_LAUNCH, full - start)
        done += steps * batch_size
        runs.append((ws, steps, done))
    if partial:
        runs.append((net.steps.workspace(partial), 1, n))
    return runs


class LocalEpochs:
    """``run(epoch)`` trains one epoch on this process; returns (Σ loss·rows, Σ right predictions)."""

    def __init__(self, net, X, Y, batch_size, lrs, clip, shuffle, seed, units, interrupt):
        self.net, self.X, self.Y, self.lrs, self.clip, self.units = net, X, Y, lrs, clip, units
        self.shuffle, self.rng, self.interrupt = shuffle, numpy.random.default_rng(seed), interrupt
        n = X.shape[0]
        self.order = numpy.arange(n, dtype=numpy.int64)
        self.order_dev, self.cursor, self.totals = net.steps.fit_buffers(n)  # kept: a later fit replays the graphs
        self.zero_cursor, self.zero_totals = numpy.zeros(1, numpy.int64), numpy.zeros(len(TOTALS))
        self.host_totals = numpy.zeros(len(TOTALS))
        net.backend.copyto(self.order_dev, self.order)
        self.launches = launches(net, n, batch_size)
        self.batches = sum(steps for _, steps, _ in self.launches)

    def run(self, epoch, bar=None):
        backend, start_time = self.net.backend, time.perf_counter()
        if self.shuffle:
            self.rng.shuffle(self.order)
            backend.copyto(self.order_dev, self.order)
        backend.copyto(self.cursor, self.zero_cursor)
        backend.copyto(self.totals, self.zero_totals)
        self.lrs.start()
        for ws, steps, done in self.launches:
            self.lrs.next(steps)
            self.net.steps.launch(steps, self.X, self.Y, self.order_dev, self.cursor, ws, self.totals, self.clip,
                                  between_steps=self.interrupt.check)
            self.interrupt.check()
            if bar is not None and bar.due():  # a read (a wait) only when the line is redrawn
                elapsed = time.perf_counter() - start_time
                total, correct = self.read(epoch)
                bar.update(epoch, done, total / done, done / elapsed if elapsed > 0 else 0.0,
                           accuracy=None if self.units is None else correct / (done * self.units))
        return self.read(epoch)  # waits for the epoch's work

    def read(self, epoch):
        """The one host round trip: the epoch's totals; (Σ loss·rows, right predictions), or
        NonFiniteLossError naming the first bad step."""
        totals = self.net.backend.to_host(self.totals, self.host_totals).tolist()
        bad = totals[TOTALS.bad_loss], totals[TOTALS.bad_grad_check], totals[TOTALS.bad_update_check]
        if not all(map(math.isfinite, bad)):
            where = "loss" if not math.isfinite(bad[0]) else "gradients" if not math.isfinite(bad[1]) else "update"
            raise NonFiniteLossError(bad[0], where, epoch=epoch, batch=int(totals[TOTALS.good_steps]) + 1,
                                     batches=self.batches)
        return totals[TOTALS.loss_rows], totals[TOTALS.correct]


class DataParallelEpochs:
    """One epoch of a data-parallel ``fit``, step by step: this rank's batches of the permutation,
    then, if its shard ran out before the others', steps with no rows (they take part in the
    all-reduce and the update). Each step's loss is read back (the ranks synchronise at every
    step's all-reduce anyway), so a bad step raises at once, on every rank."""

    def __init__(self, net, X, Y, batch_size, lrs, clip, shuffle, seed, units, plan):
        self.net, self.X, self.Y, self.lrs, self.clip, self.units = net, X, Y, lrs, clip, units
        self.batch_size, self.plan, self.shuffle, self.rng = batch_size, plan, shuffle, numpy.random.default_rng(seed)
        self.order_dev = net.steps.fit_buffers(X.shape[0])[0]
        self.order = numpy.arange(X.shape[0], dtype=numpy.int64)
        net.backend.copyto(self.order_dev, self.order)

    def run(self, epoch, bar=None):
        if self.shuffle:
            self.rng.shuffle(self.order)
            self.net.backend.copyto(self.order_dev, self.order)
        n, backend, steps, plan = self.X.shape[0], self.net.backend, self.net.steps, self.plan
        self.lrs.start()
        weighted = correct = 0.0
        ws = None
        for step in range(plan.steps):
            start = step * self.batch_size
            batch = min(self.batch_size, n - start) if start < n else 0
            if batch:
                ws = steps.workspace(batch)
                index = self.order_dev[start:start + batch]
                backend.gather_rows(self.X, index, ws.inputs)
                backend.gather_rows(self.Y, index, ws.targets)
            self.lrs.next(1)
            try:
                loss = steps.train(ws.inputs if batch else None, ws.targets if batch else None, ws, True, plan.sync,
                                   self.clip)
            except NonFiniteLossError as exc:  # on every rank: the all-reduced checks are the same everywhere
                raise NonFiniteLossError(exc.loss, exc.where, epoch=epoch, batch=step + 1, batches=plan.steps) from None
            weighted += loss * plan.step_rows[step]
            if self.units is not None:
                correct += float(ws.correct)  # the right predictions of every rank's batch, all-reduced
        return weighted, correct
