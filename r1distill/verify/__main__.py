"""`python -m r1distill.verify` = `r1distill verify`."""

import sys

from r1distill.verify.stage import main

if __name__ == "__main__":
    sys.exit(main())
