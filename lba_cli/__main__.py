"""``python -m lba_cli`` (also what ``torchrun -m lba_cli`` runs)."""

from lba_cli.cli import main

main()
