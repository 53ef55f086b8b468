"""What a browser gets: the page at ``/`` (status, fractal explorer, function lab, optimizer
paths, likelihood), and the API docs at ``/docs`` and ``/redoc``, all from files the package
ships (``static/``; the JavaScript libraries in ``static/vendor/`` come from npm through
``web/package-lock.json`` and ``make web``), so a server without internet serves them whole."""
