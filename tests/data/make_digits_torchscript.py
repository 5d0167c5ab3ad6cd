#!/usr/bin/python3
"""Write tests/data/torchscript/: digits/v1's CNN as a frozen TorchScript module (digits.pt),
and cumsum.pt, a module calling an operator the torch backend does not claim (aten::cumsum), for
the tests that such a model is refused by name.

The weights are read from digits/v1's ONNX file (nothing is trained), loaded into make_digits.py's
DigitsCNN, traced on one row and frozen. Before writing, the module must reproduce torch's golden
logits (digits/v1/golden/heldout/output_0.pb, written when v1 was trained) on all 360 rows to
1e-5. Used with the ONNX and TFLite files of the same weights for the bundle with one variant per
format (tests/integration/cross_format_rollout_test.cpp).

    scripts/install-deps.sh --models && /usr/bin/python3 tests/data/make_digits_torchscript.py
"""

import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from make_digits import DigitsCNN

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "digits", "v1")
OUT = os.path.join(HERE, "torchscript", "digits.pt")
UNCLAIMED = os.path.join(HERE, "torchscript", "cumsum.pt")


class Cumsum(torch.nn.Module):
    """forward(x [N,1,8,8]) -> [N,64]: flatten, then a running sum (aten::cumsum)."""

    def forward(self, x):
        return torch.cumsum(torch.flatten(x, 1), 1)


def main():
    model = DigitsCNN()
    onnx_model = onnx.load(os.path.join(DIGITS, "model", "digits_op10.onnx"))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
               for i in onnx_model.graph.initializer}
    model.load_state_dict(weights, strict=True)
    model.eval()
    golden = os.path.join(DIGITS, "golden", "heldout")
    x = numpy_helper.to_array(onnx.load_tensor(os.path.join(golden, "input_0.pb")))
    want = numpy_helper.to_array(onnx.load_tensor(os.path.join(golden, "output_0.pb")))
    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(model, torch.from_numpy(x[:1].copy())))
        got = frozen(torch.from_numpy(x.copy())).numpy()
    worst = float(np.max(np.abs(got - want)))
    if worst > 1e-5:
        sys.exit(f"digits.pt differs from torch's golden logits by {worst}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    torch.jit.save(frozen, OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes); max diff to the golden logits {worst:.2e}")
    with torch.no_grad():
        cumsum = torch.jit.freeze(torch.jit.trace(Cumsum().eval(), torch.from_numpy(x[:1].copy())))
    torch.jit.save(cumsum, UNCLAIMED)
    print(f"wrote {UNCLAIMED} ({os.path.getsize(UNCLAIMED)} bytes)")


if __name__ == "__main__":
    main()
