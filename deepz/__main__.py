"""``python -m deepz``: the deepz command line."""

from deepz._cli import main

if __name__ == "__main__":
    main()
