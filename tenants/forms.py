"""Admin forms of the tenants app.

Business rules (quotas, the last owner) are not written here: a form checks them by running the
very service the save will call, in a savepoint that is rolled back (``check_with_service``). The
admin's change view is one transaction, so the tenant row the service locks during that check stays
locked until the save: no concurrent request can slip in between.

``tenant`` is ``editable=False`` on ``TenantScopedModel`` (no API or form may move a row to another
tenant), so the admin forms of tenant-owned rows declare it themselves: chosen on add, read-only
after. Model validation of those rows runs inside the chosen tenant's scope, because Django's
unique and constraint checks query ``_default_manager``, which is the scoped manager.
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.db import transaction
from django.utils import timezone

from tenants import services
from tenants.context import tenant_scope
from tenants.exceptions import TenantsError
from tenants.models import ApiKey, Membership, Tenant


class TenantAdminForm(forms.ModelForm):
    class Meta:
        model = Tenant
        fields = ("slug", "name", "plan", "status", "limit_overrides")

    def clean_limit_overrides(self) -> dict:
        # An emptied field means "no overrides", not SQL NULL.
        return self.cleaned_data.get("limit_overrides") or {}


class TenantOwnedAdminForm(forms.ModelForm):
    """Base admin form of a tenant-owned row; subclasses set ``Meta.model``.

    Invariant: the row's tenant is set from the declared ``tenant`` field on add and from the
    instance on change, and model validation (uniqueness included) runs in that tenant's scope,
    so it can only compare the row with rows of the same tenant.
    """

    tenant = forms.ModelChoiceField(queryset=Tenant.objects.all())

    class Meta:
        # The admin merges this into its own ``exclude``; without it, listing the declared
        # ``tenant`` in the admin's fields makes Django reject the non-editable model field.
        exclude = ("tenant",)  # noqa: DJ006

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "tenant" in self.fields:  # a search box: a select of 100,000 tenants would not do
            model_field = self._meta.model._meta.get_field("tenant")
            self.fields["tenant"] = forms.ModelChoiceField(
                queryset=Tenant.objects.all(), widget=AutocompleteSelect(model_field, admin.site)
            )

    def chosen_tenant(self) -> Tenant | None:
        if "tenant" in self.fields:
            return self.cleaned_data.get("tenant")
        return self.instance.tenant if self.instance.tenant_id else None

    def _get_validation_exclusions(self) -> set[str]:
        return super()._get_validation_exclusions() - {"tenant"}

    def _post_clean(self) -> None:
        tenant = self.chosen_tenant()
        if tenant is None:
            return  # the field already carries its "required" error
        self.instance.tenant = tenant
        with tenant_scope(tenant):
            super()._post_clean()


class _RollBack(Exception):
    """Ends the savepoint of ``check_with_service``."""


def check_with_service(call: Callable[[], object]) -> None:
    """Run the service ``call`` and roll its writes back; its refusal becomes a form error.

    Callbacks the call registered with ``on_commit`` are discarded with the savepoint.
    """
    try:
        with transaction.atomic():
            call()
            raise _RollBack
    except _RollBack:
        return
    except TenantsError as error:
        raise forms.ValidationError(str(error.detail)) from error


class MembershipAdminForm(TenantOwnedAdminForm):
    """A membership: checked on add (quota, already a member) and on a role change (last owner)
    by the services the admin saves through."""

    class Meta(TenantOwnedAdminForm.Meta):
        model = Membership

    def clean(self) -> dict:
        cleaned = super().clean()
        tenant, role = self.chosen_tenant(), cleaned.get("role")
        if tenant is None or role is None or self.errors:
            return cleaned
        if self.instance.pk is None:
            user = cleaned.get("user")
            if user is not None:
                check_with_service(
                    lambda: services.membership_add(tenant=tenant, user=user, role=role)
                )
        else:
            check_with_service(
                lambda: services.membership_change_role(
                    membership=Membership.all_tenants.get(pk=self.instance.pk), role=role
                )
            )
        return cleaned


class ApiKeyAdminForm(TenantOwnedAdminForm):
    """An API key's admin form: filled in on add (``services.api_key_create`` makes the key), all
    read-only on change."""

    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        initial=[ApiKey.Scope.READ, ApiKey.Scope.WRITE],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta(TenantOwnedAdminForm.Meta):
        model = ApiKey
        fields = ("name", "scopes", "expires_at", "requests_per_minute")

    def clean_expires_at(self):
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at

    def clean(self) -> dict:
        cleaned = super().clean()
        tenant = self.chosen_tenant()
        if tenant is not None and self.instance.pk is None and not self.errors:
            check_with_service(
                lambda: services.api_key_create(
                    tenant=tenant,
                    name=cleaned.get("name") or "",
                    scopes=cleaned.get("scopes"),
                    expires_at=cleaned.get("expires_at"),
                    requests_per_minute=cleaned.get("requests_per_minute"),
                )
            )
        return cleaned
