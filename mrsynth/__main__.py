"""``python -m mrsynth`` (and ``torchrun -m mrsynth train ...``) runs the command line."""

from mrsynth.cli.app import main

if __name__ == "__main__":
    main()
