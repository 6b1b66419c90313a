"""The API's OpenAPI 3.1 document and its Swagger UI page.

Only the /api/v1 routes are in the document: the app sets
``include_in_schema=False`` and the API router sets it back to True.
The document is at /api/v1/openapi.json and the page at /api/v1/docs.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, Router, get
from litestar.datastructures import ResponseHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from app.access.guards import PUBLIC
from app.api.common import BYPASS_PAGE_MIDDLEWARE, SECURITY_SCHEME

DOCS_PATH = "/api/v1/docs"
SWAGGER_DIR = "/static/vendor/swagger-ui-5.35.0"
# Swagger UI sets style attributes, so styles may be inline. Scripts still
# come only from this origin: the page starts Swagger UI from api-docs.js.
DOCS_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PUBLIC_OPT = {**BYPASS_PAGE_MIDDLEWARE, "permission": PUBLIC}


class SwaggerPage(SwaggerRenderPlugin):
    """Swagger UI without inline scripts, from files this site serves."""

    def __init__(self) -> None:
        super().__init__(
            path="/",
            js_url=f"{SWAGGER_DIR}/swagger-ui-bundle.js",
            css_url=f"{SWAGGER_DIR}/swagger-ui.css",
            favicon='<link rel="icon" href="/static/favicon.svg">',
            style="",
        )

    def render(
        self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]
    ) -> bytes:
        title = openapi_schema["info"]["title"]
        return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  {self.favicon}
  <link rel="stylesheet" href="{self.css_url}">
</head>
<body>
  <div id="swagger-ui" data-url="/api/v1/openapi.json"></div>
  <script src="{self.js_url}"></script>
  <script src="/static/api-docs.js"></script>
</body>
</html>
""".encode()


@get(
    "/api/v1/openapi.json",
    opt=PUBLIC_OPT,
    include_in_schema=False,
    media_type=MediaType.JSON,
    sync_to_thread=False,
)
def openapi_document(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Serve the OpenAPI document of the /api/v1 routes."""
    return Response(request.app.openapi_schema.to_schema())


def openapi_config() -> OpenAPIConfig:
    """Configure the document; Litestar serves the docs page under DOCS_PATH."""
    return OpenAPIConfig(
        title="Switchboard API",
        version="1",
        description=(
            "Deals, tickets, accounts and contacts, as the key's user may see "
            "and change them. Authenticate with `Authorization: Bearer <key>`; "
            "keys are made on the Security page."
        ),
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API key such as sb_12_<64 hex digits>.",
                )
            }
        ),
        render_plugins=[SwaggerPage()],
        openapi_router=Router(
            DOCS_PATH,
            route_handlers=[],
            opt=PUBLIC_OPT,
            include_in_schema=False,
            response_headers=[
                ResponseHeader(name="content-security-policy", value=DOCS_POLICY)
            ],
        ),
    )
