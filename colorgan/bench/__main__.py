"""python -m colorgan.bench: time and measure training and inference (see ``main``)."""

from colorgan.bench import main

main()
