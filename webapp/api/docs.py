from __future__ import annotations

from django.templatetags.static import static
from drf_spectacular.views import SpectacularSwaggerSplitView


class LocalSwaggerView(SpectacularSwaggerSplitView):
    """Swagger UI from the files of drf-spectacular-sidecar (served as static files), whatever
    SPECTACULAR_SETTINGS say, so the docs work offline and load nothing from a CDN. The split view serves its
    start-up script as a file (`?script`), so the page needs no inline script under our CSP."""

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        return static(f"drf_spectacular_sidecar/swagger-ui-dist/{filename}")

    @staticmethod
    def _swagger_ui_favicon() -> str:
        return static("drf_spectacular_sidecar/swagger-ui-dist/favicon-32x32.png")
