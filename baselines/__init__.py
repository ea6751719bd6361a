"""Methods other than QARL (RARL, SAC, curricula, CAT, MixedNE-LD, domain randomisation).

Each method lives in its own module and is found by the CLI through a registry of import strings.
"""
