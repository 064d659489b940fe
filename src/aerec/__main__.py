"""``python -m aerec`` runs the command line."""

from aerec.cli import main

if __name__ == "__main__":
    main()
