"""`python -m edgeres ...` (also what `torchrun -m edgeres train ...` runs)."""
from .cli import main

main()
