"""Kernel mutants: put a known kind of bug back into the lab's real kernel and see
whether pyvcore notices (``pyvcore mutants``).

* :mod:`pyvcore.mutants.catalogue` -- the mutants (data);
* :mod:`pyvcore.mutants.apply` -- check and patch a copy of vmlinux or kvm-hv.ko;
* :mod:`pyvcore.mutants.run` -- boot each mutant, judge it, print the kill table.
"""

from pyvcore.mutants.apply import MutantRefused, MutatedKernel, apply, locate
from pyvcore.mutants.catalogue import MUTANTS, Mutant, by_name

__all__ = ["MUTANTS", "Mutant", "MutantRefused", "MutatedKernel", "apply", "by_name", "locate"]
