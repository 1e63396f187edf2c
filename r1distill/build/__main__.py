"""`python -m r1distill.build` = `r1distill build`."""

import sys

from r1distill.build.stage import main

if __name__ == "__main__":
    sys.exit(main())
