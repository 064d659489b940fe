"""The routes of the HTTP API, one router per concern; :func:`aerec.serve.app.create_app`
assembles them around one :class:`~aerec.serve.context.ServeContext`.

* :mod:`~aerec.serve.routes.docs`: ``/docs`` and ``/redoc``;
* :mod:`~aerec.serve.routes.service`: ``/health``;
* :mod:`~aerec.serve.routes.recommendations`: ``POST /recommendations`` and
  ``/users/{user_id}/recommendations``;
* :mod:`~aerec.serve.routes.movies`: ``/movies`` and ``/movies/{movie_id}``;
* :mod:`~aerec.serve.routes.page`: ``/`` and ``/static``.
"""
