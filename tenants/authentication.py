"""DRF authentication by API key. The key was already checked by ``TenantMiddleware``."""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication

from tenants.models import ApiKey


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """The caller of a request made with an API key. Not a user: it has no staff rights."""

    api_key: ApiKey
    is_authenticated: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    pk: None = None

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(BaseAuthentication):
    """Accepts the key that ``TenantMiddleware`` resolved; a bad key never gets this far."""

    def authenticate(self, request):
        api_key = getattr(request, "api_key", None)
        if api_key is None:
            return None
        return ApiKeyPrincipal(api_key=api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "ils_<prefix>_<secret>"}
