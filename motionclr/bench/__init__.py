"""Benchmarks behind `motionclr bench <name>`: each module has ``main(argv)``."""
