"""The CI deploy webhook receiver: ``events.py`` (the signature and the validated
deployment event, pure) and ``app.py`` (the HTTP app, the slow-client guards, the inbox
table it stores into, ``serve``)."""
