"""tuitune: from a handful of examples to a fine-tuned small model, in the terminal."""
__version__ = "0.1.0"
