"""Write the expected arrays of ``vggedu/exercises.py`` (its GENERATED block) from ``vggedu.layers``, once.

    .venv/bin/python tools/make_exercise_data.py

The checkers compare a student's function with these literals; they are made here, from the
reference layers, so that checking never calls vggedu's own layers. Rerun only if a fixed input changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vggedu import exercises as E
from vggedu import layers as L

PATH = Path(E.__file__)


def expected_arrays() -> dict:
    """Every expected array of the checkers, from the reference layers, keyed as in ``EXPECTED``."""
    data = {}
    for case in E.CONV_CASES:
        x, w, b, stride, pad, dout = E.conv_inputs(case)
        out, cache = L.conv_forward(x, w, b, stride, pad)
        dx, dw, db = L.conv_backward(dout, cache)
        data.update({f"conv {case} out": out, f"conv {case} dx": dx, f"conv {case} dw": dw, f"conv {case} db": db})
    for case, (x, size, stride) in E.POOL_CASES.items():
        out, cache = L.maxpool_forward(x, size, stride)
        data[f"pool {case} out"] = out
        data[f"pool {case} dx"] = L.maxpool_backward(E.wave(out.shape, 3.0), cache)
    for case, (scores, y) in E.SOFTMAX_CASES.items():
        loss, dscores = L.softmax_cross_entropy(scores, y)
        data.update({f"softmax {case} loss": np.array(loss), f"softmax {case} dscores": dscores})
    for case, (w, dw, v, lr, mu) in E.SGD_CASES.items():
        next_v = mu * v - lr * dw  # the paper's (Caffe's) form, as vggedu.optim.SGD without weight decay
        data.update({f"sgd {case} next_w": w + next_v, f"sgd {case} next_v": next_v})
    return data


def main():
    data = expected_arrays()
    lines = ["EXPECTED = {"]
    for key, a in data.items():
        values = [repr(float(v)) for v in np.asarray(a, dtype=np.float64).ravel()]
        lines.append(f"    {key!r}: [")
        for i in range(0, len(values), 4):
            lines.append("        " + ", ".join(values[i : i + 4]) + ",")
        lines.append("    ],")
    lines.append("}")
    text = PATH.read_text()
    block = re.compile(r"(# BEGIN GENERATED[^\n]*\n).*?(# END GENERATED)", re.S)
    PATH.write_text(block.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text))
    print(f"wrote {len(data)} expected arrays ({sum(np.size(a) for a in data.values())} numbers) into {PATH}")


if __name__ == "__main__":
    main()
