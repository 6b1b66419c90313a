"""The ASGI entry point uvicorn serves: ``app.asgi:app``."""

from app.logs import configure_logging
from app.main import create_app

configure_logging()
app = create_app()
