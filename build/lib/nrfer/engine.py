"""One epoch of training and one deterministic evaluation; the loop in nrfer/train.py calls these.

Batches are cut from the in-memory uint8 split on the training device; labels, metrics and
the loss sum stay on the device until the epoch ends (no per-batch host syncs).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from nrfer.data.augment import augment_batch
from nrfer.data.types import FERSplit
from nrfer.metrics import confusion_update, summarize


class DeviceSplit:
    """A split as tensors: uint8 images on `device` (zero-copy on the CPU), labels, targets."""

    def __init__(self, split: FERSplit, device: torch.device) -> None:
        pin = device.type == "cuda"
        images = torch.from_numpy(split.images)
        self.images = images.pin_memory().to(device, non_blocking=True) if pin else images
        self.labels = torch.from_numpy(split.labels).to(device)
        self.targets = torch.from_numpy(split.targets).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx].float().div_(255)


def autocast(device: torch.device, amp: str):
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(
    model: nn.Module,
    data: DeviceSplit,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg,
    seed: int,
    label_mode: str = "majority",
) -> dict:
    """cfg: TrialConfig. `seed` fixes this epoch's order and augmentation (so a resumed run
    repeats an unbroken one). Returns {'train_loss', 'train_acc'} (one host sync, at the end)."""
    model.train()
    dev, n, bs = data.device, len(data), cfg.train.batch_size
    cpu_gen = torch.Generator().manual_seed(seed)
    gen = cpu_gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(seed)
    order = torch.randperm(n, generator=cpu_gen).to(dev)
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    # Drop a last batch of one image: BatchNorm cannot train on it.
    stop = n - 1 if n % bs == 1 and n > 1 else n
    for start in range(0, stop, bs):
        idx = order[start : start + bs]
        x = augment_batch(data.batch(idx), cfg.augment, gen)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if label_mode == "crossentropy":
            target = data.targets[idx]
        elif label_mode == "probability":  # FERPlus: sample a label from the vote distribution
            target = (
                torch.multinomial(data.targets[idx].cpu(), 1, generator=cpu_gen).squeeze(1).to(dev)
            )
        else:
            target = data.labels[idx]
        with autocast(dev, cfg.train.amp):
            logits = model(x)
            loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(1) == data.labels[idx]).sum()
    seen = max(stop, 1)
    return {"train_loss": float(loss_sum) / seen, "train_acc": float(correct) / seen}


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: DeviceSplit, loss_fn: nn.Module, cfg, num_classes: int
) -> dict:
    """Deterministic: no augmentation, eval mode, fixed order. Loss on the hard labels."""
    model.eval()
    dev = data.device
    conf = torch.zeros(num_classes, num_classes, device=dev, dtype=torch.long)
    loss_sum = torch.zeros((), device=dev)
    for start in range(0, len(data), cfg.train.eval_batch_size):
        idx = torch.arange(start, min(start + cfg.train.eval_batch_size, len(data)), device=dev)
        x = data.batch(idx)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(dev, cfg.train.amp):
            logits = model(x)
        loss_sum += loss_fn(logits.float(), data.labels[idx]) * len(idx)
        confusion_update(conf, logits.argmax(1), data.labels[idx])
    out = summarize(conf)
    out["loss"] = float(loss_sum) / max(len(data), 1)
    return out
