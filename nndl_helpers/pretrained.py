"""Course checkpoints: models trained for longer than a notebook's quick profile can afford.

A notebook first trains its own quick model and shows it; then it loads the course checkpoint of the same
model and shows what longer training achieves. Each checkpoint is

* built by one command, ``python course.py checkpoint NAME``, which runs the chapter's own exported training
  code (``nndl_helpers.chapters``) with the recipe written below, and records in the file how, where and how
  long it was trained;
* stored in the repository under ``checkpoints/`` (all of them together stay under 20 MB) and listed with its
  SHA-256 in the data registry (``nndl_helpers.data.CHECKPOINTS``); the build command writes the new hash there;
* loaded only after its SHA-256 matches, with ``torch.load(..., weights_only=True)``: tensors, numbers and
  strings, never pickled code. A missing or damaged file raises ``CheckpointError``, which says how to rebuild it.

    python -m nndl_helpers.pretrained list
    python -m nndl_helpers.pretrained build NAME [--threads N]     (what `python course.py checkpoint NAME` runs)
    python -m nndl_helpers.pretrained score NAME [--record]        (load it and score it again)
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .data import CHECKPOINTS, CheckpointError, checkpoint_dir, sha256_of

FORMAT = 1
MAX_TOTAL_BYTES = 20 * 2 ** 20


def rebuild_command(name: str) -> str:
    return f"python course.py checkpoint {name}"


def checkpoint_path(name: str) -> Path:
    """Where checkpoint `name` lives (``checkpoints/`` in the repository, or ``$NNDL_CHECKPOINT_DIR``)."""
    if name not in CHECKPOINTS:
        raise CheckpointError(f"no course checkpoint named {name!r}; the registry has: {', '.join(sorted(CHECKPOINTS))}")
    return checkpoint_dir() / CHECKPOINTS[name].file


def verified_path(name: str) -> Path:
    """The path of checkpoint `name` after checking that it exists and that its SHA-256 is the registry's."""
    path, entry = checkpoint_path(name), CHECKPOINTS[name]
    how = (f"Rebuild it with `{rebuild_command(name)}` ({entry.build_note}), or restore the committed file with "
           f"`git checkout -- checkpoints/{entry.file}`.")
    if not path.is_file():
        raise CheckpointError(f"course checkpoint {name!r} is missing: no file {path}. {how}")
    got = sha256_of(path)
    if got != entry.sha256:
        raise CheckpointError(f"course checkpoint {name!r} at {path} is damaged or not the registered one: its SHA-256 "
                              f"is {got}, the registry (nndl_helpers/data.py) lists {entry.sha256}. {how}")
    return path


def read_checkpoint(name: str) -> dict:
    """The verified contents of checkpoint `name`: {"format", "name", "config", "state_dict", "trained"}."""
    import torch

    path = verified_path(name)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # a file with the right hash that still does not load: say which and how to rebuild
        raise CheckpointError(f"course checkpoint {name!r} at {path} cannot be read safely ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}). Rebuild it with "
                              f"`{rebuild_command(name)}`.") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("name") != name:
        raise CheckpointError(f"course checkpoint {name!r} at {path} is not in the course's format {FORMAT}. "
                              f"Rebuild it with `{rebuild_command(name)}`.")
    return blob


def load_checkpoint(name: str, device="cpu"):
    """Load course checkpoint `name`: returns (model in eval mode on `device`, info dict).

    info holds "config" (what the model is), "trained" (how, where and how long it was trained, and its
    scores when it was built), "summary" (one line of that, for a notebook to print), and what else the
    model needs ("vocab" for a language model).
    """
    blob = read_checkpoint(name)
    model = RECIPES[name].make_model(blob["config"])
    model.load_state_dict(blob["state_dict"])
    model.to(device).eval()
    info = {"config": blob["config"], "trained": blob["trained"], "summary": describe_training(blob["trained"]),
            **RECIPES[name].extras(blob["config"])}
    return model, info


def describe_training(trained: dict) -> str:
    minutes = trained["seconds"] / 60
    return (f"{trained['recipe']}; trained for {minutes:.0f} min on {trained['device']} ({trained['threads']} "
            f"thread{'s' if trained['threads'] != 1 else ''}, {trained['machine']}) with torch {trained['torch']} "
            f"on {trained['date']}, by `{trained['command']}`")


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    make_model: Callable[[dict], object]       # config -> an untrained model of the right shape
    build: Callable[[object], tuple]           # device -> (trained model, config, recipe text)
    score: Callable[[object, object, dict], dict]   # (model, device, info) -> the scores a build records
    extras: Callable[[dict], dict] = lambda config: {}   # config -> what else a user of the model needs


def _mnist_train_test():
    from .data import load_mnist

    X, y = load_mnist("mnist", "train")
    X_test, y_test = load_mnist("mnist", "test")
    return X[:, None], y, X_test[:, None], y_test


# -- the digit judge: chapter 5's LeNet-5 as trained by 13b's train_digit_judge, on plain and on 14x14 digits

def _judge_model(config):
    from .chapters.ch05a_torch import lenet5_torch

    return lenet5_torch()


def _judge_build(device):
    import numpy as np
    from .chapters.ch13b_torch import train_digit_judge
    from .chapters.ch13c_torch import shrink_digits, enlarge_digits

    X, y, _, _ = _mnist_train_test()
    config = {"epochs": 3, "batch_size": 128, "lr": 3e-3, "shrunk_size": 14}
    images = np.concatenate([X, enlarge_digits(shrink_digits(X, config["shrunk_size"]))])
    model = train_digit_judge(images, np.r_[y, y], epochs=config["epochs"], batch_size=config["batch_size"],
                              lr=config["lr"], seed=0, device=device)
    recipe = ("chapter 5's LeNet-5 trained by 13b's train_digit_judge on all 60,000 MNIST training digits, each "
              "as it is and shrunk to 14x14 and enlarged again; 3 epochs of Adam, batch 128")
    return model, config, recipe


def _judge_score(model, device, info):
    from .chapters.ch13b_torch import class_probabilities, score_generated

    _, _, X_test, y_test = _mnist_train_test()
    accuracy = float((class_probabilities(model, X_test).argmax(1).numpy() == y_test).mean())
    return {"test_accuracy": accuracy, "real_confident": score_generated(model, X_test[:1000])["confident"]}


def _load_judge(device):
    model, _ = load_checkpoint("digit_judge", device)
    return model


# -- 13c: the U-Net DDPM on 14x14 digits, trained 26x longer than the quick profile, on all of MNIST

DDPM_SAMPLE_SEED, DDPM_SCORE_SAMPLES = 1, 256


def _ddpm_model(config):
    from .chapters.ch13c_torch import TinyUNet

    return TinyUNet(tuple(config["channels"]), T=config["T"], size=config["size"])


def _ddpm_build(device):
    import torch
    from .chapters.ch13c import NoiseSchedule
    from .chapters.ch13c_torch import TinyUNet, shrink_digits, train_ddpm

    X, _, _, _ = _mnist_train_test()
    config = {"channels": [16, 32, 32], "T": 100, "size": 14, "schedule": "cosine", "steps": 16_000,
              "batch_size": 64, "lr": 2e-3, "ema_decay": 0.999, "min_snr_gamma": 5.0}
    torch.manual_seed(0)
    model = TinyUNet(tuple(config["channels"]), T=config["T"], size=config["size"])
    started = time.perf_counter()

    def progress(step, loss):
        if (step + 1) % 1000 == 0:
            print(f"  step {step + 1:,}/{config['steps']:,}, loss {float(loss):.4f}, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)

    _, sampler = train_ddpm(model, shrink_digits(X, config["size"]) * 2 - 1, NoiseSchedule(config["T"], config["schedule"]),
                            steps=config["steps"], batch_size=config["batch_size"], lr=config["lr"], device=device,
                            seed=0, ema_decay=config["ema_decay"], min_snr_gamma=config["min_snr_gamma"], on_step=progress)
    recipe = ("13c's TinyUNet (16, 32, 32) on 14x14 digits, T = 100 (cosine), trained by 13c's train_ddpm on all "
              "60,000 MNIST training digits: 16,000 AdamW steps of 64 images (17 epochs; the quick profile takes "
              "1,200 steps of 32), min-SNR weighting, EMA 0.999")
    return sampler, config, recipe


def _ddpm_score(model, device, info):
    import torch
    from .chapters.ch13b_torch import score_generated
    from .chapters.ch13c import NoiseSchedule, ddim_sample
    from .chapters.ch13c_torch import enlarge_digits, torch_eps_predictor

    T, size = model.T, model.size
    gen = torch.Generator(device=device).manual_seed(DDPM_SAMPLE_SEED)
    x_T = torch.randn((DDPM_SCORE_SAMPLES, 1, size, size), generator=gen, device=device)
    samples = ddim_sample(torch_eps_predictor(model, device), NoiseSchedule(T, "cosine"), x_T, steps=T, eta=1.0,
                          draw_noise=lambda x: torch.randn(x.shape, generator=gen, device=x.device), clip_x0=(-1.0, 1.0))
    scores = score_generated(_load_judge(device), enlarge_digits(((samples.clamp(-1, 1) + 1) / 2).cpu().numpy()))
    return {"ddpm_confident": scores["confident"], "ddpm_classes": scores["classes"]}


# -- 13b: the DCGAN, twice as wide as the quick profile's and trained 5x longer, on all of MNIST

DCGAN_SAMPLE_SEED, DCGAN_SCORE_SAMPLES = 2, 1000


def _dcgan_model(config):
    from .chapters.ch13b_torch import dcgan_generator

    return dcgan_generator(config["z_dim"], config["channels"])


def _dcgan_build(device):
    import torch
    from .chapters.ch13b_torch import dcgan_discriminator, dcgan_generator, train_dcgan

    X, _, _, _ = _mnist_train_test()
    config = {"channels": 32, "z_dim": 64, "steps": 8_000, "batch_size": 64, "lr_g": 2e-3, "lr_d": 1e-3,
              "lr_decay": True}
    torch.manual_seed(0)
    generator = dcgan_generator(config["z_dim"], config["channels"]).to(device)
    discriminator = dcgan_discriminator(config["channels"]).to(device)
    started = time.perf_counter()

    def progress(step, d_loss, g_loss):
        if step % 1000 == 0:
            print(f"  step {step:,}/{config['steps']:,}, D loss {float(d_loss):.3f}, G loss {float(g_loss):.3f}, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)

    train_dcgan(generator, discriminator, torch.as_tensor(X).to(device), steps=config["steps"],
                batch_size=config["batch_size"], lr_g=config["lr_g"], lr_d=config["lr_d"], device=device,
                gen=torch.Generator(device=device).manual_seed(0), lr_decay=config["lr_decay"], on_step=progress)
    generator.eval()
    recipe = ("13b's DCGAN with 32 base channels and a 64-d z (the quick profile: 16 and 32), trained by 13b's "
              "train_dcgan on all 60,000 MNIST training digits: 8,000 steps of 64 images (the quick profile takes "
              "1,600 of 20,000 digits), Adam 2e-3 / 1e-3 (G / D) decaying linearly to 0")
    return generator, config, recipe


def _dcgan_score(generator, device, info):
    import torch
    from .chapters.ch13b_torch import score_generated

    gen = torch.Generator(device=device).manual_seed(DCGAN_SAMPLE_SEED)
    z = torch.randn(DCGAN_SCORE_SAMPLES, generator[0].in_features, generator=gen, device=device)
    generator.eval()
    with torch.no_grad():
        images = generator(z).float()
    scores = score_generated(_load_judge(device), images)
    return {"dcgan_confident": scores["confident"], "dcgan_classes": scores["classes"]}


# -- 08b: the tiny GPT on the regular five-character poems of the Complete Tang Poems (chapter 6's corpus)

TANG_OPENINGS = ("明月", "青山", "秋夜", "落日", "故人", "江上", "白日", "春日")   # chapter 6's openings
TANG_TEMPERATURE, TANG_SAMPLE_CHARS = 0.6, 60


def _tang_corpus(min_freq):
    import numpy as np
    from .chapters.ch06 import REGULAR_5, Vocab
    from .data import load_tang_poems

    poems = [p for p in load_tang_poems("quantangshi") if REGULAR_5.fullmatch(p)]
    poems = [poems[k] for k in np.random.default_rng(0).permutation(len(poems))]
    cut = int(0.95 * len(poems))                          # the last 5% of the shuffled poems: validation
    train_text, val_text = "\n".join(poems[:cut]) + "\n", "\n".join(poems[cut:]) + "\n"
    return Vocab(train_text, min_freq=min_freq), train_text, val_text, len(poems)


def _tang_model(config):
    from .chapters.ch08b_torch import TinyGPT

    return TinyGPT(len(config["vocab"]), config["context"], config["d_model"], config["heads"], config["layers"],
                   config["dropout"])


def _tang_extras(config):
    from .chapters.ch06 import Vocab

    return {"vocab": Vocab.from_tokens(config["vocab"])}


def _tang_build(device):
    import torch
    from .chapters.ch08b_torch import train_gpt

    config = {"layers": 3, "heads": 4, "d_model": 96, "context": 48, "dropout": 0.1, "steps": 6_000,
              "batch_size": 16, "lr": 3e-3, "warmup": 200, "min_freq": 10}
    vocab, train_text, val_text, n_poems = _tang_corpus(config["min_freq"])
    config["vocab"] = list(vocab.idx_to_token)
    torch.manual_seed(0)
    model = _tang_model(config)
    ids = lambda text: torch.tensor(vocab.encode(text), device=device)
    train_gpt(model, ids(train_text), ids(val_text), config["steps"], config["lr"], config["batch_size"],
              config["warmup"], "tiny GPT, Tang poems (checkpoint)", eval_every=500)
    model.eval()
    recipe = (f"08b's TinyGPT (3 layers, 4 heads, width 96, context 48, dropout 0.1) trained by 08b's train_gpt on "
              f"95% of the {n_poems:,} regular five-character poems of the Complete Tang Poems (chapter 6's corpus; "
              f"{len(vocab):,} characters seen >= 10 times): 6,000 AdamW steps of 16 windows, lr 3e-3")
    return model, config, recipe


def _tang_score(model, device, info):
    import torch
    from .chapters.ch06 import regular_lines
    from .chapters.ch08b_torch import evaluate, generate_text

    vocab, val_text = info["vocab"], _tang_corpus(info["config"]["min_freq"])[2]
    val_ids = torch.tensor(vocab.encode(val_text), device=device)
    # a newline first: the model learned that a poem starts after one (without it, the opening reads as the
    # middle of a line); the poem ends at the next newline
    poems = [generate_text(model, vocab, "\n" + opening, TANG_SAMPLE_CHARS, TANG_TEMPERATURE, seed=k)[1:].split("\n")[0]
             for k, opening in enumerate(TANG_OPENINGS)]
    regular, lines = (sum(x) for x in zip(*(regular_lines(p) for p in poems)))
    return {"tang_val_loss": evaluate(model, val_ids, model.context), "tang_regular_lines": regular / lines}


RECIPES: dict[str, Recipe] = {
    "digit_judge": Recipe(_judge_model, _judge_build, _judge_score),
    "08b_tang_gpt": Recipe(_tang_model, _tang_build, _tang_score, _tang_extras),
    "13b_dcgan": Recipe(_dcgan_model, _dcgan_build, _dcgan_score),
    "13c_ddpm_unet": Recipe(_ddpm_model, _ddpm_build, _ddpm_score),
}


# --------------------------------------------------------------------------- build


def _register_sha(name: str, sha: str, data_py: Path | None = None) -> None:
    """Write `sha` as checkpoint `name`'s SHA-256 in the registry (nndl_helpers/data.py)."""
    data_py = data_py or Path(__file__).with_name("data.py")
    text = data_py.read_text(encoding="utf-8")
    pattern = re.compile(rf'("{re.escape(name)}": CourseCheckpoint\(.*?sha256=")([0-9a-f]*)(")', re.S)
    new, count = pattern.subn(lambda m: m.group(1) + sha + m.group(3), text, count=1)
    if count != 1:
        raise CheckpointError(f"no registry entry for {name!r} in {data_py}; add one to CHECKPOINTS first")
    data_py.write_text(new, encoding="utf-8")


def build(name: str, threads: int | None = None, device=None) -> Path:
    """Train checkpoint `name` with its recipe, save it under checkpoints/, and register its SHA-256."""
    import torch
    from .config import best_device, seed_everything

    if name not in RECIPES:
        raise CheckpointError(f"no recipe for {name!r}; recipes: {', '.join(sorted(RECIPES))}")
    if threads:
        torch.set_num_threads(int(threads))
    device = torch.device(device) if device else best_device()
    seed_everything(0)
    started = time.perf_counter()
    model, config, recipe = RECIPES[name].build(device)
    seconds = time.perf_counter() - started
    scores = RECIPES[name].score(model, device, {"config": config, **RECIPES[name].extras(config)})
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    trained = {"recipe": recipe, "seconds": round(seconds, 1), "device": device.type, "machine": machine,
               "threads": torch.get_num_threads(), "torch": torch.__version__.split("+")[0],
               "date": datetime.date.today().isoformat(), "command": rebuild_command(name),
               "scores": {k: float(v) for k, v in scores.items()}}
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    path = _save(name, {"format": FORMAT, "name": name, "config": config, "state_dict": state, "trained": trained})
    print(f"  {describe_training(trained)}")
    print(f"  scores: {trained['scores']}")
    return path


def _save(name: str, blob: dict) -> Path:
    """Write `blob` as checkpoint `name` (atomically) and register its SHA-256."""
    import torch

    path = checkpoint_dir() / CHECKPOINTS[name].file
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
        torch.save(blob, tmp)
    os.replace(tmp.name, path)
    sha = sha256_of(path)
    _register_sha(name, sha)
    print(f"{name}: {path} ({path.stat().st_size / 2 ** 20:.2f} MB), SHA-256 {sha} written to the registry")
    return path


def score(name: str, device="cpu", record: bool = False) -> dict:
    """Load checkpoint `name` and compute again the scores its build recorded.

    record=True stores the new scores in the file (after the scoring code changed; the weights are untouched)
    and registers the file's new SHA-256.
    """
    model, info = load_checkpoint(name, device)
    scores = {k: float(v) for k, v in RECIPES[name].score(model, device, info).items()}
    if record:
        blob = read_checkpoint(name)
        blob["trained"]["scores"] = scores
        _save(name, blob)
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nndl_helpers.pretrained", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    b = sub.add_parser("build")
    b.add_argument("names", nargs="+", choices=sorted(RECIPES))
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--device", default=None)
    s = sub.add_parser("score")
    s.add_argument("names", nargs="+", choices=sorted(RECIPES))
    s.add_argument("--record", action="store_true", help="store the new scores in the file (weights untouched)")
    ns = parser.parse_args(argv)
    try:
        if ns.command == "list":
            for name, entry in CHECKPOINTS.items():
                path = checkpoint_path(name)
                size = f"{path.stat().st_size / 2 ** 20:.2f} MB" if path.is_file() else "missing"
                print(f"{name:16s} {entry.file:22s} {size:>9s}  {entry.notebook}  ({entry.build_note})")
        elif ns.command == "build":
            for name in ns.names:
                build(name, ns.threads, ns.device)
        else:
            for name in ns.names:
                print(name, score(name, record=ns.record))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
