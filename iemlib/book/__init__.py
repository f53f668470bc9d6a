"""What the book's pages need beyond the science: tables of results, the plotting style and the
figures that recur, the interactive explorer, and the exercise checkers."""
