"""HTTP service and web page over :class:`aerec.recommend.Recommender`.

    from aerec.serve import create_app, serve
    app = create_app("runs/seed")          # a FastAPI app; the model is loaded once, here
    serve("runs/seed", port=8000)          # the same, served by uvicorn (``aerec serve``)
"""

from aerec.serve.app import create_app
from aerec.serve.server import serve

__all__ = ["create_app", "serve"]
