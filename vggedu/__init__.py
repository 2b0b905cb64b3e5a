"""vggedu: the VGG very deep ConvNets (Simonyan & Zisserman, ICLR 2015) in plain NumPy/CuPy.

The package is small modules, one idea each:

- ``backend``    NumPy/CuPy switch (the only module that imports CuPy)
- ``layers``     reference forward/backward pairs (conv via im2col, pool, ReLU, FC, dropout, LRN, loss)
- ``kernels``    the same arithmetic, fast: blocked im2col, inside taps, fused backward (what ``nn`` runs)
- ``exercises``  checkers for the layers a student writes (lessons 02 and 05)
- ``nn``         thin Module objects wrapping the pairs
- ``gradcheck``  numerical gradients for testing every backward
- ``optim``      SGD with momentum and weight decay, learning-rate schedules
- ``configs``    Table 1 of the paper: configs A, A-LRN, B, C, D, E (+ ``tiny`` for tests)
- ``models``     ``build_vgg`` and the summary (shapes, parameters, FLOPs, receptive fields)
- ``transplant`` moving trained weights from A into deeper nets
- ``checkpoint`` safe ``.npz`` checkpoints (atomic, hashed, no pickles)
- ``data``       datasets, the paper's augmentation, a prefetching loader
- ``train``      the trainer behind ``vggedu train``
- ``evaluate``   the test protocol (Sect. 3.2): FC layers as convolutions, dense, multi-crop, scales, fusion
- ``pretrained`` the released VGG-16/19 weight files (MatConvNet, Caffe, Keras, torchvision) as vggedu nets
- ``features``   very deep features (Appendix B) and a linear SVM on them

Heavy submodules are imported lazily so ``import vggedu`` stays fast.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "build_vgg": "vggedu.models",
    "save_checkpoint": "vggedu.checkpoint",
    "load_checkpoint": "vggedu.checkpoint",
}

# The function ``transplant`` shares its name with its module, and importing a submodule sets the
# package attribute of that name to the module (the CLI imports it), which would shadow a lazy
# export. Importing it here binds the function last; the module stays ``sys.modules["vggedu.transplant"]``
# (``from vggedu.transplant import PAPER_LAYERS`` works). It imports nothing heavy.
from vggedu.transplant import transplant  # noqa: E402


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vggedu' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["__version__", "transplant", *_LAZY]
