"""`python -m edgeres ...` (also what `torchrun -m edgeres train ...` runs)."""
from edgeres.cli import main

main()
