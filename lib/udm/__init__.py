"""udm: the shared library of *Understanding Diffusion Models, Executably*.

One module per idea, each read next to the chapter that introduces it:

========================  ==========================================================
``udm.validate``          argument checks with errors that name the argument
``udm.gaussian``          diagonal-Gaussian densities, KL divergences, sampling
``udm.schedules``         discrete noise schedules (alpha_t, alpha_bar_t, SNR)
``udm.toy``               data with exact ground truth: Gaussian mixtures, 8x8 digits
``udm.nets``              small networks (MLPs, time embeddings)
``udm.train``             the one training loop every chapter uses
``udm.plot``              the book's figure style
``udm.symbolic``          SymPy helpers for the derivation checks
========================  ==========================================================

Importing ``udm`` sets PyTorch to one CPU thread (override with the environment
variable ``UDM_NUM_THREADS``): on a busy two-core machine two threads ran several
times slower than one.
"""

import os

import torch

__version__ = "0.1.0"

torch.set_num_threads(int(os.environ.get("UDM_NUM_THREADS", "1")))
