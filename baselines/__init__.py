"""Methods other than QARL (RARL, SAC, curricula, CAT, MixedNE-LD, domain randomisation).

Each method lives in its own module, built on public names of ``qarl`` only, and is found through the method
registry (``qarl.experiment.registry``), which names it by an import string.
"""
