"""Distillation losses: golden values against the papers' formulas, gradients, extremes, errors.

Every test that can sweeps ``LOSSES.list()``, so a newly registered loss is tested at once (and
fails until it has a golden case and a reference below). The references are deliberately
independent of the implementation: float64 NumPy, explicit loops over samples, pairs and
triplets, no torchslim code.
"""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest
import torch

from torchslim.core.errors import TorchSlimError, UnknownNameError
from torchslim.distill import losses as L
from torchslim.distill.connectors import ConvConnector, connector
from torchslim.distill.losses import KINDS, LOSSES, Outputs, TapLoss

NAMES = LOSSES.list()
B, C = 6, 5
INDEX = [3, 0, 7, 12, 5, 9]
NUM_DATA = 16
CRD_NEGATIVES = [1, 3, 3, 14, 0]  # 3 and 0 are own indices of samples 0 and 1: they must be skipped

# name -> (constructor arguments, which inputs: "logits", "map" (B, C, H, W), "vec" (B, D), or the
# transformer features "seq" (B, layers + 1, N, D) stacked hidden states, "attn" (B, layers, H, N, N)
# stacked attention maps, "proj" (B, N, D) one attention projection)
GOLDEN = {
    "ce": ({"label_smoothing": 0.1}, "logits"),
    "kd": ({"T": 3.0}, "logits"),
    "dkd": ({"alpha": 1.5, "beta": 2.0, "T": 2.0}, "logits"),
    "dist": ({"beta": 1.5, "gamma": 0.5, "T": 2.0}, "logits"),
    "fitnet": ({}, "map"),
    "at": ({"p": 2.0, "beta": 1000.0}, "map"),
    "sp": ({}, "map"),
    "rkd": ({"w_d": 25.0, "w_a": 50.0}, "vec"),
    "pkt": ({}, "vec"),
    "crd": ({"num_data": NUM_DATA, "feat_dim": 4, "nce_k": 5, "nce_t": 0.07}, "vec"),
    "embed-cos": ({}, "logits"),
    "embed-mse": ({}, "logits"),
    "embed-sim": ({}, "vec"),
    "hidden-mse": ({"layers": "0:0/1:2/-1:-1"}, "seq"),
    "attention-kl": ({"layers": "0:1/1:2"}, "attn"),
    "relation-kl": ({"heads": 3}, "proj"),
}
TOKENS = 5
LENGTHS = [5, 3, 4, 5, 2, 5]  # real tokens per sample; the rest of each row is padding
MASK = torch.arange(TOKENS).view(1, -1) < torch.tensor(LENGTHS).view(-1, 1)


def _require_golden(name: str) -> None:
    if name not in GOLDEN or name not in REFERENCE:
        pytest.fail(f"Loss {name!r} is registered but has no golden case: add it to GOLDEN and REFERENCE.")


# -- inputs ----------------------------------------------------------------------------------------


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "s.logits": torch.randn(B, C, generator=g) * 2,
        "t.logits": torch.randn(B, C, generator=g) * 2,
        "s.map": torch.randn(B, 3, 8, 8, generator=g),
        "t.map": torch.randn(B, 4, 4, 4, generator=g),
        "s.vec": torch.randn(B, 7, generator=g),
        "t.vec": torch.randn(B, 9, generator=g),
        "y": torch.randint(0, C, (B,), generator=g),
        "s.seq": torch.randn(B, 3, TOKENS, 4, generator=g),
        "t.seq": torch.randn(B, 4, TOKENS, 4, generator=g),
        "s.attn": _attention(torch.randn(B, 2, 2, TOKENS, TOKENS, generator=g) * 2),
        "t.attn": _attention(torch.randn(B, 3, 2, TOKENS, TOKENS, generator=g) * 2),
        "s.proj": torch.randn(B, TOKENS, 6, generator=g),
        "t.proj": torch.randn(B, TOKENS, 9, generator=g),
    }


def _attention(scores: torch.Tensor) -> torch.Tensor:
    """Attention probabilities over the real keys of each sample (padded keys exactly 0)."""
    keys = MASK.view(B, 1, 1, 1, TOKENS)
    return torch.softmax(scores.masked_fill(~keys, float("-inf")), dim=-1)


def _outputs(x: dict[str, torch.Tensor]) -> tuple[Outputs, Outputs]:
    sources = ("map", "vec", "seq", "attn", "proj")
    student = Outputs(x["s.logits"], {f"s.{k}": x[f"s.{k}"] for k in sources})
    teacher = Outputs(x["t.logits"], {f"t.{k}": x[f"t.{k}"] for k in sources})
    return student, teacher


def _make(name: str, kwargs: dict, source: str, x: dict[str, torch.Tensor]):
    if source != "logits":
        kwargs = {**kwargs, "student_tap": f"s.{source}", "teacher_tap": f"t.{source}"}
    loss = L.create(name, **kwargs)
    if hasattr(loss, "build"):
        loss.build(x[f"s.{source}"].shape, x[f"t.{source}"].shape)
    return loss


def _fix_weights(name: str, loss, seed: int = 1) -> dict[str, np.ndarray]:
    """Known connector/head weights, copied into the loss and returned for the reference."""
    g = torch.Generator().manual_seed(seed)
    fixed: dict[str, np.ndarray] = {}
    with torch.no_grad():
        if name == "fitnet":
            w, gamma, beta = torch.randn(4, 3, generator=g), torch.rand(4, generator=g) + 0.5, torch.randn(4, generator=g)
            loss.connector.conv.weight.copy_(w.view(4, 3, 1, 1))
            loss.connector.bn.weight.copy_(gamma)
            loss.connector.bn.bias.copy_(beta)
            fixed = {"W": w.double().numpy(), "gamma": gamma.double().numpy(), "beta": beta.double().numpy()}
        if name == "crd":
            for side, head, d_in in (("s", loss.embed_s, 7), ("t", loss.embed_t, 9)):
                w, b = torch.randn(4, d_in, generator=g), torch.randn(4, generator=g)
                head.weight.copy_(w)
                head.bias.copy_(b)
                fixed[f"W{side}"], fixed[f"b{side}"] = w.double().numpy(), b.double().numpy()
            loss.negatives = lambda index: torch.tensor(CRD_NEGATIVES)
            fixed["bank_s"] = loss.bank_s.double().numpy().copy()
            fixed["bank_t"] = loss.bank_t.double().numpy().copy()
    return fixed


def golden_case(name: str, grad: bool = False):
    """(loss, student, teacher, batch, context for the reference)."""
    _require_golden(name)
    kwargs, source = GOLDEN[name]
    x = _inputs()
    if grad:
        x = {k: v.requires_grad_(True) if v.is_floating_point() else v for k, v in x.items()}
    loss = _make(name, kwargs, source, x)
    ctx = {"s": x[f"s.{source}"].detach().double().numpy(), "t": x[f"t.{source}"].detach().double().numpy(),
           "y": x["y"].numpy(), "index": INDEX, "lengths": LENGTHS, **kwargs, **_fix_weights(name, loss)}
    student, teacher = _outputs(x)
    batch = {"y": x["y"], "index": torch.tensor(INDEX), "attention_mask": MASK.long()}
    return loss, student, teacher, batch, ctx


# -- references: float64, loops, no shared code ------------------------------------------------------


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def ref_ce(c):
    eps, total = c["label_smoothing"], 0.0
    for row, label in zip(c["s"], c["y"], strict=True):
        logp = np.log(_softmax(row))
        total += (1 - eps) * -logp[label] + eps * -logp.mean()
    return total / len(c["y"])


def ref_kd(c):
    T, total = c["T"], 0.0
    for zs, zt in zip(c["s"], c["t"], strict=True):
        p, q = _softmax(zt / T), _softmax(zs / T)
        total += sum(p[k] * math.log(p[k] / q[k]) for k in range(len(p)))
    return T * T * total / len(c["s"])


def ref_dkd(c):
    T, total = c["T"], 0.0
    for zs, zt, label in zip(c["s"], c["t"], c["y"], strict=True):
        p, q = _softmax(zt / T), _softmax(zs / T)
        bt, bs = [p[label], 1 - p[label]], [q[label], 1 - q[label]]
        tckd = sum(bt[k] * math.log(bt[k] / bs[k]) for k in range(2))
        others = [k for k in range(len(p)) if k != label]
        pt = [p[k] / sum(p[j] for j in others) for k in others]
        qs = [q[k] / sum(q[j] for j in others) for k in others]
        nckd = sum(pt[k] * math.log(pt[k] / qs[k]) for k in range(len(others)))
        total += c["alpha"] * tckd + c["beta"] * nckd
    return T * T * total / len(c["s"])


def _pearson(u, v):
    u, v = np.asarray(u) - np.mean(u), np.asarray(v) - np.mean(v)
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-8))


def ref_dist(c):
    T = c["T"]
    ps = np.array([_softmax(row / T) for row in c["s"]])
    pt = np.array([_softmax(row / T) for row in c["t"]])
    inter = 1 - np.mean([_pearson(ps[b], pt[b]) for b in range(ps.shape[0])])
    intra = 1 - np.mean([_pearson(ps[:, k], pt[:, k]) for k in range(ps.shape[1])])
    return T * T * (c["beta"] * inter + c["gamma"] * intra)


def _block_mean(m: np.ndarray, out: int) -> np.ndarray:
    """(H, W) -> (out, out) by averaging k x k blocks (adaptive pooling when H is a multiple)."""
    k = m.shape[0] // out
    return np.array([[m[i * k:(i + 1) * k, j * k:(j + 1) * k].mean() for j in range(out)] for i in range(out)])


def ref_fitnet(c):
    s, t, W = c["s"], c["t"], c["W"]
    nb, cs = s.shape[:2]
    ct, h = t.shape[1], t.shape[2]
    pooled = np.array([[_block_mean(s[b, ch], h) for ch in range(cs)] for b in range(nb)])
    mapped = np.zeros((nb, ct, h, h))
    for b in range(nb):
        for o in range(ct):
            for ch in range(cs):
                mapped[b, o] += W[o, ch] * pooled[b, ch]
    for o in range(ct):  # BatchNorm in training mode: batch statistics, biased variance, eps 1e-5
        mu, var = mapped[:, o].mean(), mapped[:, o].var()
        mapped[:, o] = c["gamma"][o] * (mapped[:, o] - mu) / math.sqrt(var + 1e-5) + c["beta"][o]
    return float(((mapped - t) ** 2).mean())


def ref_at(c):
    def attention(f, size):
        m = np.mean(np.abs(f) ** c["p"], axis=0)
        q = _block_mean(m, size).flatten()
        return q / np.linalg.norm(q)

    size = min(c["s"].shape[2], c["t"].shape[2])
    total, count = 0.0, 0
    for fs, ft in zip(c["s"], c["t"], strict=True):
        qs, qt = attention(fs, size), attention(ft, size)
        for j in range(len(qs)):
            total += (qs[j] - qt[j]) ** 2
            count += 1
    return c["beta"] / 2 * total / count


def ref_sp(c):
    def gram(f):
        q = f.reshape(len(f), -1)
        g = np.array([[np.dot(q[i], q[j]) for j in range(len(q))] for i in range(len(q))])
        return np.array([row / np.linalg.norm(row) for row in g])

    b = len(c["s"])
    return float(((gram(c["s"]) - gram(c["t"])) ** 2).sum() / b**2)


def ref_rkd(c):
    def distances(e):
        d = [[np.linalg.norm(e[j] - e[i]) for j in range(len(e))] for i in range(len(e))]
        mu = np.mean([v for row in d for v in row if v > 0])
        return [[v / mu for v in row] for row in d]

    def cosine(e, i, j, k):
        u, v = e[j] - e[i], e[k] - e[i]
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        return 0.0 if nu == 0 or nv == 0 else float(np.dot(u, v) / (nu * nv))

    s, t = c["s"].reshape(len(c["s"]), -1), c["t"].reshape(len(c["t"]), -1)
    n = len(s)
    ds, dt = distances(s), distances(t)
    loss_d = sum(_huber(ds[i][j] - dt[i][j]) for i in range(n) for j in range(n)) / n**2
    loss_a = sum(_huber(cosine(s, i, j, k) - cosine(t, i, j, k))
                 for i in range(n) for j in range(n) for k in range(n)) / n**3
    return c["w_d"] * loss_d + c["w_a"] * loss_a


def ref_pkt(c):
    def conditional(f):
        x = [row / np.linalg.norm(row) for row in f.reshape(len(f), -1)]
        k = [[(1 + np.dot(a, b)) / 2 for b in x] for a in x]
        return [[v / sum(row) for v in row] for row in k]

    ps, pt = conditional(c["s"]), conditional(c["t"])
    n, eps = len(ps), 1e-7
    return sum(pt[i][j] * math.log((pt[i][j] + eps) / (ps[i][j] + eps)) for i in range(n) for j in range(n)) / n**2


def ref_crd(c):
    def embed(w, b, x):
        e = w @ x + b
        return e / np.linalg.norm(e)

    tau, total = c["nce_t"], 0.0
    for i, own in enumerate(c["index"]):
        es = embed(c["Ws"], c["bs"], c["s"][i])
        et = embed(c["Wt"], c["bt"], c["t"][i])
        for anchor, positive, bank in ((es, et, c["bank_t"]), (et, es, c["bank_s"])):
            scores = [np.dot(anchor, positive) / tau]
            scores += [np.dot(anchor, bank[n]) / tau for n in CRD_NEGATIVES if n != own]
            top = max(scores)
            total += -scores[0] + top + math.log(sum(math.exp(v - top) for v in scores))
    return total / len(c["index"])


def ref_embed_cos(c):
    total = 0.0
    for s, t in zip(c["s"], c["t"], strict=True):
        total += 1 - np.dot(s, t) / (np.linalg.norm(s) * np.linalg.norm(t))
    return total / len(c["s"])


def ref_embed_mse(c):
    return float(np.mean([(a - b) ** 2 for s, t in zip(c["s"], c["t"], strict=True) for a, b in zip(s, t, strict=True)]))


def _pairs(spec: str, n_s: int, n_t: int) -> list[tuple[int, int]]:
    return [(int(a) % n_s, int(b) % n_t) for a, b in (p.split(":") for p in spec.split("/"))]


def ref_embed_sim(c):
    def cos(a, b):
        return np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))

    n, total = len(c["s"]), 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += (cos(c["s"][i], c["s"][j]) - cos(c["t"][i], c["t"][j])) ** 2
    return total / (n * (n - 1))


def ref_hidden_mse(c):
    pairs = _pairs(c["layers"], c["s"].shape[1], c["t"].shape[1])
    total = 0.0
    for i, j in pairs:
        errors = [np.mean((c["s"][b, i, n] - c["t"][b, j, n]) ** 2)
                  for b in range(len(c["s"])) for n in range(c["lengths"][b])]
        total += np.mean(errors)
    return total / len(pairs)


def ref_attention_kl(c):
    pairs = _pairs(c["layers"], c["s"].shape[1], c["t"].shape[1])
    total = 0.0
    for i, j in pairs:
        rows = []
        for b in range(len(c["s"])):
            for n in range(c["lengths"][b]):
                kl = [sum(p * math.log(p / q) for p, q in zip(c["t"][b, j, h, n], c["s"][b, i, h, n], strict=True) if p > 0)
                      for h in range(c["s"].shape[2])]
                rows.append(np.mean(kl))
        total += np.mean(rows)
    return total / len(pairs)


def ref_relation_kl(c):
    heads, rows = c["heads"], []

    def relation(x, b, h, n):
        d = x.shape[2] // heads
        xb = x[b, : c["lengths"][b], h * d:(h + 1) * d]
        return _softmax(xb @ xb[n] / math.sqrt(d))

    for b in range(len(c["s"])):
        for n in range(c["lengths"][b]):
            kl = []
            for h in range(heads):
                p, q = relation(c["t"], b, h, n), relation(c["s"], b, h, n)
                kl.append(sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True)))
            rows.append(np.mean(kl))
    return float(np.mean(rows))


REFERENCE = {"ce": ref_ce, "kd": ref_kd, "dkd": ref_dkd, "dist": ref_dist, "fitnet": ref_fitnet, "at": ref_at,
             "sp": ref_sp, "rkd": ref_rkd, "pkt": ref_pkt, "crd": ref_crd, "embed-cos": ref_embed_cos,
             "embed-mse": ref_embed_mse, "embed-sim": ref_embed_sim, "hidden-mse": ref_hidden_mse, "attention-kl": ref_attention_kl,
             "relation-kl": ref_relation_kl}


# -- every registered loss ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_golden_value(name):
    loss, student, teacher, batch, ctx = golden_case(name)
    expected = REFERENCE[name](ctx)  # before the call: CRD moves its banks during it
    got = loss(student, teacher, batch).detach()
    assert got.ndim == 0
    assert float(got) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert expected > 1e-3  # the inputs are not a degenerate case where everything is zero


@pytest.mark.parametrize("name", NAMES)
def test_registered_class_has_kind_name_and_citation(name):
    cls = LOSSES.get(name)
    assert cls.kind in KINDS and cls.registered_name == name
    if name != "ce":  # the one loss that is no paper's method
        assert re.search(r"\(\d{4}\)", cls.__doc__), f"{name}: the docstring should cite its paper (year)"


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_student_and_connectors_never_teacher(name):
    loss, student, teacher, batch, _ = golden_case(name, grad=True)
    loss(student, teacher, batch).backward()
    used = student.logits if GOLDEN[name][1] == "logits" else student.features[f"s.{GOLDEN[name][1]}"]
    assert used.grad is not None and torch.isfinite(used.grad).all() and used.grad.abs().sum() > 0
    for tensor in [teacher.logits, *teacher.features.values()]:
        assert tensor.grad is None, f"{name} let a gradient reach the teacher: it must detach teacher outputs"
    for pname, param in loss.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), f"{name}.{pname} gets no gradient"


def _extreme(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher inputs with ±1e4 entries, a constant row and a duplicated row."""
    if kind == "logits":
        s = torch.tensor([[1e4, -1e4, 1e4, -1e4, 0.0], [3.0] * 5, [3.0] * 5, [-1e4, 0.0, 0.0, 0.0, 1e4]])
        t = torch.tensor([[-1e4, 1e4, -1e4, 1e4, 0.0], [-2.0] * 5, [1e4, 0.0, 0.0, 0.0, 0.0], [1e4] * 5])
        return s, t
    s, t = torch.zeros(4, 3, 4, 4), torch.zeros(4, 2, 4, 4)  # sample 0: all zero (a dead ReLU map)
    s[1], t[1] = 1e4, -1e4
    s[2, :, ::2], t[2, :, 1::2] = -1e4, 1e4
    s[3], t[3] = s[2], 5.0
    return s, t


def _extreme_transformer(source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Transformer features with ±1e4 entries, an all-zero sample and one-hot attention rows."""
    if source == "attn":  # sample 0: one-hot rows (hard attention), 1: uniform, 2: one-hot elsewhere
        s, t = torch.zeros(4, 2, 2, 4, 4), torch.zeros(4, 3, 2, 4, 4)
        s[..., 0], t[..., 0] = 1.0, 1.0
        s[1], t[1] = 0.25, 0.25
        s[2, ..., 0], s[2, ..., 3] = 0.0, 1.0
        return s, t
    shape_s, shape_t = ((4, 3, 4, 4), (4, 4, 4, 4)) if source == "seq" else ((4, 4, 6), (4, 4, 9))
    s, t = torch.zeros(shape_s), torch.zeros(shape_t)
    s[1], t[1] = 1e4, -1e4
    s[2, ..., ::2], t[2, ..., 1::2] = -1e4, 1e4
    s[3], t[3] = s[2], 5.0
    return s, t


@pytest.mark.parametrize("name", NAMES)
def test_finite_on_extreme_inputs(name):
    cls = LOSSES.get(name)
    source = GOLDEN.get(name, ({}, ""))[1]
    if source in ("seq", "attn", "proj"):
        s, t = (x.requires_grad_(True) for x in _extreme_transformer(source))
        loss = _make(name, dict(GOLDEN[name][0]), source, {f"s.{source}": s, f"t.{source}": t})
        value = loss(Outputs(None, {f"s.{source}": s}), Outputs(None, {f"t.{source}": t}),
                     {"attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])})
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(s.grad).all() and s.grad.abs().max() < 1e9
        return
    kind = "map" if issubclass(cls, TapLoss) and cls.needs_taps else "logits"
    s, t = (x.requires_grad_(True) for x in _extreme(kind))
    kwargs = {k: v for k, v in GOLDEN[name][0].items()}
    x = {"s.logits": s, "t.logits": t, "s.map": s, "t.map": t}
    loss = _make(name, kwargs, kind, x)
    student = Outputs(s, {"s.map": s}) if kind == "map" else Outputs(s)
    teacher = Outputs(t, {"t.map": t}) if kind == "map" else Outputs(t)
    value = loss(student, teacher, {"y": torch.tensor([0, 1, 2, 4]), "index": torch.tensor([0, 1, 2, 2])})
    value.backward()
    assert torch.isfinite(value), f"{name} is {value} on extreme inputs"
    assert torch.isfinite(s.grad).all(), f"{name} has a non-finite gradient on extreme inputs"
    # A zero vector normalised with F.normalize gets a 1/eps = 1e12 gradient (duplicate samples in
    # RKD, dead features); DIST's own eps allows ~1e7 on a constant row, which is the authors' formula.
    assert s.grad.abs().max() < 1e9, f"{name}'s gradient blows up on extreme inputs"


@pytest.mark.parametrize("name", [n for n in NAMES if LOSSES.get(n).kind == "logits"])
def test_logit_losses_vanish_when_student_equals_teacher(name):
    z = _inputs()["s.logits"]
    value = L.create(name)(Outputs(z), Outputs(z.clone()), {"y": _inputs()["y"]})
    assert float(value) == pytest.approx(0.0, abs=1e-6)


# -- bad input -------------------------------------------------------------------------------------


def _required(name: str) -> dict:
    """Arguments a loss cannot be built without (taps, dataset size)."""
    params = inspect.signature(LOSSES.get(name)).parameters
    need = {p for p, spec in params.items() if spec.default is inspect.Parameter.empty}
    given = {"student_tap": "s.map", "teacher_tap": "t.map", "num_data": NUM_DATA}
    missing = need - given.keys()
    assert not missing, f"test_distill_losses does not know how to supply {missing} for {name!r}"
    return {k: v for k, v in given.items() if k in need}


@pytest.mark.parametrize("name", [n for n in NAMES if "T" in inspect.signature(LOSSES.get(n)).parameters])
def test_zero_temperature_is_rejected(name):
    with pytest.raises(TorchSlimError, match=f"^{name}: T must be positive, got 0"):
        L.create(name, T=0, **_required(name))


@pytest.mark.parametrize(("name", "arg"), [
    (n, p) for n in NAMES for p, spec in inspect.signature(LOSSES.get(n)).parameters.items()
    if isinstance(spec.default, float)])
def test_negative_numbers_are_rejected(name, arg):
    with pytest.raises(TorchSlimError, match=rf"^{name}: {arg} must be .*got -1\.0"):
        L.create(name, **{**_required(name), arg: -1.0})


@pytest.mark.parametrize("name", [n for n in NAMES if LOSSES.get(n).kind == "logits"])
def test_mismatched_class_counts_name_both(name):
    loss = L.create(name)
    with pytest.raises(TorchSlimError, match=r"5 classes.*teacher predicts 6"):
        loss(Outputs(torch.randn(2, 5)), Outputs(torch.randn(2, 6)), {"y": torch.tensor([0, 1])})


@pytest.mark.parametrize("name", [n for n in NAMES if issubclass(LOSSES.get(n), TapLoss)])
@pytest.mark.parametrize("side", ["student", "teacher"])
def test_missing_tap_names_it_and_the_available_ones(name, side):
    kwargs = {**_required(name), "student_tap": "s.map", "teacher_tap": "t.map", f"{side}_tap": "layer9"}
    loss = L.create(name, **kwargs)
    x = _inputs()
    source = {"logits": "vec"}.get(GOLDEN[name][1], GOLDEN[name][1])  # the shapes the loss is built for
    if hasattr(loss, "build"):
        loss.build(x[f"s.{source}"].shape, x[f"t.{source}"].shape)
    student, teacher = _outputs(x)
    there = "'s.map', 's.vec'" if side == "student" else "'t.map', 't.vec'"
    with pytest.raises(TorchSlimError, match=rf"^{name}: the {side} tap 'layer9' .*available: {there}"):
        loss(student, teacher, {"y": x["y"], "index": torch.tensor(INDEX)})


@pytest.mark.parametrize("name", [n for n in NAMES if issubclass(LOSSES.get(n), TapLoss)])
def test_half_given_taps_are_rejected(name):
    with pytest.raises(TorchSlimError, match=f"^{name}: give both"):
        L.create(name, **{**_required(name), "student_tap": "s.map", "teacher_tap": None})


def test_unknown_loss_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'kd'\?.*Valid distillation loss names: at, attention-kl, ce"):
        L.create("kdd")


def test_unknown_and_missing_arguments_are_named():
    with pytest.raises(TorchSlimError, match=r"'kd' takes no argument\(s\) 'temperature'.*arguments: T"):
        L.create("kd", temperature=4)
    with pytest.raises(TorchSlimError, match=r"'fitnet' needs student_tap, teacher_tap"):
        L.create("fitnet")


def test_crd_without_index_or_with_an_index_out_of_range():
    loss, student, teacher, batch, _ = golden_case("crd")
    with pytest.raises(TorchSlimError, match=r"CRD needs dataset indices: use a torchslim loader, which yields "
                                             r"\(x, y, index\)"):
        loss(student, teacher, {"y": batch["y"]})
    with pytest.raises(TorchSlimError, match=r"dataset index 16 is out of range for num_data=16"):
        loss(student, teacher, {**batch, "index": torch.tensor([0, 1, 2, 3, 4, 16])})


@pytest.mark.parametrize("name", ["fitnet", "crd"])
def test_unbuilt_connector_says_to_build(name):
    loss = L.create(name, **_required(name))
    student, teacher = _outputs(_inputs())
    with pytest.raises(TorchSlimError, match=rf"^{name}: .*not built: call build"):
        loss(student, teacher, {"index": torch.tensor(INDEX)})


def test_at_needs_4d_features_and_dkd_needs_labels():
    loss = L.create("at", student_tap="s.vec", teacher_tap="t.vec")
    with pytest.raises(TorchSlimError, match=r"^at: attention maps need \(B, C, H, W\) features; got student \(6, 7\)"):
        loss(*_outputs(_inputs()), {})
    with pytest.raises(TorchSlimError, match=r"^dkd: needs the labels batch\['y'\]"):
        L.create("dkd")(*_outputs(_inputs()), {})


# -- KD's temperature, CRD's bank, the connectors ----------------------------------------------------


def test_kd_is_zero_for_identical_logits_and_scales_with_t_squared():
    z = _inputs()["s.logits"].double()
    assert float(L.KD(T=4)(Outputs(z), Outputs(z.clone()), {})) == 0.0
    s, t = _inputs(5)["s.logits"].double(), _inputs(5)["t.logits"].double()
    for T in (1.0, 2.0, 8.0):
        ctx = {"s": s.numpy(), "t": t.numpy(), "T": 1.0}
        kl_at_T = ref_kd({**ctx, "s": ctx["s"] / T, "t": ctx["t"] / T})  # KL of the softened outputs, no T²
        assert float(L.KD(T=T)(Outputs(s), Outputs(t), {})) == pytest.approx(T**2 * kl_at_T, rel=1e-9)
    # Hinton et al.: at high T, T²·KL tends to logit matching, (1/2C) mean_b Σ_c (Δ - mean Δ)².
    delta = (s - t) - (s - t).mean(dim=1, keepdim=True)
    matching = float((delta**2).sum(dim=1).mean() / (2 * C))
    assert float(L.KD(T=1000.0)(Outputs(s), Outputs(t), {})) == pytest.approx(matching, rel=5e-3)


def test_crd_bank_moves_toward_the_batch_only_in_training():
    loss, student, teacher, batch, ctx = golden_case("crd")
    loss.eval()
    loss(student, teacher, batch)
    assert np.allclose(loss.bank_s.double().numpy(), ctx["bank_s"])
    loss.train()
    loss(student, teacher, batch)
    for i, own in enumerate(INDEX):
        e = ctx["Ws"] @ ctx["s"][i] + ctx["bs"]
        moved = 0.5 * ctx["bank_s"][own] + 0.5 * e / np.linalg.norm(e)
        assert np.allclose(loss.bank_s[own].double().numpy(), moved / np.linalg.norm(moved), atol=1e-6)
    untouched = [n for n in range(NUM_DATA) if n not in INDEX]
    assert np.allclose(loss.bank_t[untouched].double().numpy(), ctx["bank_t"][untouched])


def test_crd_default_negatives_are_uniform_indices_of_the_bank():
    loss = L.create("crd", num_data=NUM_DATA, nce_k=200)
    drawn = loss.negatives(torch.tensor(INDEX))
    assert drawn.shape == (200,) and drawn.dtype == torch.int64
    assert 0 <= int(drawn.min()) and int(drawn.max()) < NUM_DATA


def test_relation_losses_without_taps_use_the_logits():
    x = _inputs()
    student, teacher = _outputs(x)
    for name in ("rkd", "sp", "pkt"):
        on_logits = L.create(name)(student, teacher, {})
        as_features = L.create(name, student_tap="s.logits", teacher_tap="t.logits")(
            Outputs(None, {"s.logits": x["s.logits"]}), Outputs(None, {"t.logits": x["t.logits"]}), {})
        assert float(on_logits) == pytest.approx(float(as_features))


def test_connectors_fit_any_probed_shape():
    up = connector(torch.Size([2, 3, 4, 4]), torch.Size([2, 5, 8, 8]))
    assert isinstance(up, ConvConnector) and up(torch.randn(2, 3, 4, 4)).shape == (2, 5, 8, 8)
    assert connector(torch.Size([2, 7]), torch.Size([2, 9]))(torch.randn(2, 7)).shape == (2, 9)
    assert connector(torch.Size([2, 4, 7]), torch.Size([2, 4, 9]))(torch.randn(2, 4, 7)).shape == (2, 4, 9)
    with pytest.raises(TorchSlimError, match=r"student feature of shape \(2, 7\) to a teacher feature of shape"):
        connector(torch.Size([2, 7]), torch.Size([2, 3, 4, 4]))
    fitnet = L.create("fitnet", student_tap="s.vec", teacher_tap="t.vec")
    fitnet.build(torch.Size([2, 7]), torch.Size([2, 9]))
    assert {n for n, _ in fitnet.named_parameters()} == {"connector.weight", "connector.bias"}


@pytest.mark.parametrize("name", [n for n in NAMES if LOSSES.get(n).kind == "logits"])
def test_logit_losses_accept_a_teacher_that_masks_classes_with_minus_inf(name):
    s = _inputs()["s.logits"].requires_grad_(True)
    t = _inputs()["t.logits"].clone()
    t[:, 3] = float("-inf")
    t[0, 1] = float("-inf")
    value = L.create(name)(Outputs(s), Outputs(t), {"y": torch.tensor([0, 1, 2, 4, 0, 2])})
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
