import sys

from r1distill.cli import main

if __name__ == "__main__":
    sys.exit(main())
