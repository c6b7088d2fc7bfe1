"""udm: the shared library of *Understanding Diffusion Models, Executably*.

One module per idea, each read next to the chapter that introduces it:

==========================  ========================================================
``udm.validate``            argument checks with errors that name the argument
``udm.seeds``               one switch, UDM_SEED, for every random seed of a chapter
``udm.exercises``           reference answers of the exercises, for the student notebooks
``udm.gaussian``            diagonal-Gaussian densities, KL divergences, sampling (Ch. 3)
``udm.symbolic``            SymPy helpers for the derivation checks (every chapter)
``udm.toy``                 data with exact ground truth: Gaussian mixtures, 8x8 digits
``udm.metrics``             sliced and exact Wasserstein distances, mode coverage, the
                            Fréchet distance of feature Gaussians (Ch. 13)
``udm.nets``                small networks (MLPs, time embeddings, a small U-Net)
``udm.train``               the one training loop every chapter uses
``udm.plot``                the book's figure style
``udm.autoencoder``         the deterministic autoencoder (Ch. 1)
``udm.vae``                 VAE, conditional VAE, hierarchical VAE, IWAE bound (Ch. 3, 5)
``udm.gan``                 generator, discriminator, adversarial training (Ch. 4)
``udm.paths``               noising paths x_t = a(t) x_0 + s(t) eps on one time axis; t,
                            log-SNR and sigma; VP (discrete, continuous), VE, EDM, straight line
``udm.schedules``           discrete noise schedules (alpha_t, alpha_bar_t, SNR) (Ch. 6)
``udm.learned_schedule``    a monotone network for a learned noise schedule (Ch. 6)
``udm.diffusion``           forward steps, posterior, ELBO terms of the discrete chain (Ch. 6)
``udm.parameterizations``   x_0, noise, score, v, velocity; the Denoiser and its loss (Ch. 7)
``udm.samplers``            ancestral, DDIM, Euler, Heun, Euler-Maruyama, predictor-corrector,
                            EDM, exponential integrators (DPM-Solver); grids (Ch. 6-9, 12)
``udm.distill``             progressive distillation to few-step samplers (Ch. 12)
``udm.score``               score matching, Langevin and annealed Langevin (Ch. 8)
``udm.guidance``            classifier and classifier-free guidance as denoisers (Ch. 9)
``udm.flows``               flow matching's couplings (minibatch OT, reflow), straightness (Ch. 11)
``udm.latent``              latent diffusion's glue: scaled autoencoder codes (Ch. 13)
``udm.likelihood``          exact log-likelihoods of ODE flows; the continuous-time ELBO (Ch. 10)
``udm.conventions``         other papers' and libraries' schedule conventions (appendix)
==========================  ========================================================

Importing ``udm`` sets PyTorch to one CPU thread (override with the environment
variable ``UDM_NUM_THREADS``): on a busy two-core machine two threads ran several
times slower than one.
"""

import os

import torch

__version__ = "0.1.0"

torch.set_num_threads(int(os.environ.get("UDM_NUM_THREADS", "1")))
