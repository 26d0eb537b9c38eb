"""Compress a small PyTorch MLP with tensorized layers, export it, reload it, check predictions.

The data are synthetic 8 x 8 "digits": ten fixed random prototype images plus pixel noise, so
nothing downloads. A dense 64-256-10 MLP is trained, its layers are replaced by TT-matrix layers
whose rank slices carry a shrinkage prior, the tensorized net is trained (MAP), pruned and
exported to a plain ``nn.Module``. The exported weights are saved (tensors and plain config
only, no pickled code), loaded back into the dense architecture, and the two models' predictions
are compared.

Usage::

    python examples/compress_network.py [OUT_DIR]
"""

import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from bayestensor.nets import (fit_net, load_exported, predict_dense, save_exported, tensorize,
                              train_dense)

FAST = os.environ.get("BAYESTENSOR_EXAMPLES_FAST") == "1"
N_TRAIN, EPOCHS = (1000, 10) if FAST else (3000, 30)
N_TEST, NOISE = 500, 0.35

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bt-compress-"))
torch.manual_seed(0)
prototypes = torch.rand(10, 8, 8, generator=torch.Generator().manual_seed(1))


def synthetic_digits(n, seed):
    """``n`` noisy copies of the prototypes, flattened to 64 features, and their labels."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    images = prototypes[labels] + NOISE * torch.randn(n, 8, 8, generator=gen)
    return images.clamp(0, 1).flatten(1), labels


x, y = synthetic_digits(N_TRAIN, seed=2)
x_test, y_test = synthetic_digits(N_TEST, seed=3)


def accuracy(probs):
    return float((probs.argmax(-1) == y_test).float().mean())


dense = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
train_dense(dense, x, y, epochs=EPOCHS, seed=0)
print(f"dense accuracy: {accuracy(predict_dense(dense, x_test)):.3f}")

# Only the 64 x 256 layer is big enough (min_features) to be worth tensorizing.
bnet = tensorize(dense, format="ttm", max_rank=6, prior="gamma", min_features=5000, seed=0)
fit_net(bnet, x, y, method="map", epochs=EPOCHS, seed=0)
bnet.prune()
print(f"tensorized accuracy: {accuracy(bnet.predict_proba(x_test)):.3f}, "
      f"linear layers compressed {bnet.compression()['linear_ratio']:.1f}x")

small = bnet.export()
save_exported(small, out / "model.pt")
reloaded = load_exported(out / "model.pt", dense)
same = torch.allclose(predict_dense(small, x_test), predict_dense(reloaded, x_test), atol=1e-6)
print(f"exported model saved to {out / 'model.pt'}; reloaded predictions agree: {same}")
if not same:
    sys.exit("the reloaded model predicts differently from the exported one")
