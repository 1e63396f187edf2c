"""`python -m r1distill.quantize` = `r1distill quantize`."""

import sys

from r1distill.quantize.stage import main

if __name__ == "__main__":
    sys.exit(main())
