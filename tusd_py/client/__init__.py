"""The client side of ``tusd-py upload``: an authenticated session, resume state, task following.

Kept apart from the server packages: nothing here imports the app, ``auth`` or ``processing``;
it speaks only the public HTTP API, like any other client.
"""
