"""``python -m medvl`` (and ``torchrun -m medvl train ...``) run the command line."""

from medvl.cli.main import main

if __name__ == "__main__":
    main()
