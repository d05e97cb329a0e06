"""DI image uploads and staging: ``form_stream`` (a multipart upload read as it
arrives), ``images`` (checking and spooling image files) and ``di_import`` (an image
file made into a published DI).
"""

__all__: list[str] = []
