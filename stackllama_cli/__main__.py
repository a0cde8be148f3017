"""`python -m stackllama_cli`: the entry point, also the target of the accelerate re-exec."""

from stackllama_cli.cli import main

if __name__ == "__main__":
    main()
