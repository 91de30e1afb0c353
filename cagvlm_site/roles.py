"""The three roles of the product and the checks that enforce them.

A role is a Django group of the same name. Physicians label frames, cardiologists review AI
drafts, admins import, export and train. Superusers count as admins. Every view and API
endpoint names the roles it admits; anything else gets 403 (or the login page when anonymous).

Adjudicators decide the final label of frames whose labels disagree: admins, and physicians
who are also in the group "senior" (a qualification of a physician, not a role of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import models
from rest_framework.permissions import BasePermission

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.http import HttpRequest, HttpResponse
    from rest_framework.request import Request
    from rest_framework.views import APIView


class Role(models.TextChoices):
    PHYSICIAN = "physician", "Physician"
    CARDIOLOGIST = "cardiologist", "Cardiologist"
    ADMIN = "admin", "Admin"


ALL_ROLES = frozenset(Role)

#: The group that makes a physician a senior physician, who may adjudicate.
SENIOR_GROUP = "senior"


def _group_names(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """The user's group names: one query, cached on the user object for the request."""
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_cagvlm_groups", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
        user._cagvlm_groups = cached  # type: ignore[union-attr,attr-defined]
    return cached


def roles_of(user: AbstractBaseUser | AnonymousUser) -> frozenset[Role]:
    """The roles a user holds; cached on the user object for the request."""
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_cagvlm_roles", None)
    if cached is None:
        names = _group_names(user)
        cached = frozenset(role for role in Role if role.value in names)
        if user.is_superuser:  # type: ignore[attr-defined]
            cached = cached | {Role.ADMIN}
        user._cagvlm_roles = cached  # type: ignore[union-attr,attr-defined]
    return cached


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: Role) -> bool:
    return bool(roles_of(user) & set(roles))


def is_adjudicator(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Admins, and physicians in the "senior" group: they decide disputed frames."""
    if has_role(user, Role.ADMIN):
        return True
    return has_role(user, Role.PHYSICIAN) and SENIOR_GROUP in _group_names(user)


def role_required(*roles: Role) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Admit authenticated users holding one of ``roles``: anonymous users are sent to the
    login page, everyone else gets 403."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, *roles):
                raise PermissionDenied("Your role does not give access to this page.")
            return view(request, *args, **kwargs)

        wrapped.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
        return wrapped

    return decorator


def adjudicator_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Like ``role_required``, for the adjudicators (admins and senior physicians)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_adjudicator(request.user):
            raise PermissionDenied("Only admins and senior physicians adjudicate.")
        return view(request, *args, **kwargs)

    return wrapped


class _RolePermission(BasePermission):
    roles: frozenset[Role] = frozenset()
    message = "Your role does not give access to this endpoint."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return has_role(request.user, *self.roles)


def api_roles(*roles: Role) -> type[BasePermission]:
    """A DRF permission class admitting the given roles."""
    return type(
        "Allow" + "".join(role.label for role in roles),
        (_RolePermission,),
        {"roles": frozenset(roles)},
    )


#: Default for the API: any of the three roles (a user without a role sees nothing).
IsClinicalStaff = api_roles(*ALL_ROLES)


class IsAdjudicator(BasePermission):
    message = "Only admins and senior physicians adjudicate."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return is_adjudicator(request.user)


def role_context(request: HttpRequest) -> dict[str, Any]:
    """Template context: the current user's roles, for menus."""
    roles = roles_of(request.user)
    return {
        "user_roles": sorted(role.label for role in roles),
        "is_physician": Role.PHYSICIAN in roles,
        "is_cardiologist": Role.CARDIOLOGIST in roles,
        "is_admin": Role.ADMIN in roles,
        "is_adjudicator": is_adjudicator(request.user),
    }
