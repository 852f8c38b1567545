"""Local development and the embedded mode (`make run`).

The embedded mode is single-user but not a debug server: DEBUG stays off unless DJANGO_DEBUG=true, so a 404 does not
list every URL pattern and an error shows the app's own page. whitenoise serves static files from the app folders
(no collectstatic step)."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", False)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
