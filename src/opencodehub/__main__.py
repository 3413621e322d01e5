from opencodehub.cli import app

app()
