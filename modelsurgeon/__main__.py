"""``python -m modelsurgeon``."""

from modelsurgeon.cli import main

if __name__ == "__main__":
    main()
