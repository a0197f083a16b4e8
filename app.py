"""Entry point: ``python app.py [--port N]`` serves lexyjobs (web + scheduler + workers) with waitress."""
from __future__ import annotations

from lexyjobs import create_app
from lexyjobs.cli import main

app = create_app()  # for `flask --app app …` and WSGI servers; starts nothing

if __name__ == "__main__":
    main(["serve", *__import__("sys").argv[1:]])
