"""Admin pages: users, teams and roles, for administrators only."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from app.access.builtin import ADMIN_ROLE
from app.access.guards import ADMIN, admin_only
from app.access.permissions import ACTIONS, FIELD_RULES, OBJECT_TYPES, SCOPES
from app.access.service import (
    RoleInput,
    UserChanges,
    all_roles,
    all_teams,
    create_user_account,
    decode_json,
    get_role,
    get_user,
    list_roles,
    list_teams,
    list_users,
    save_role,
    save_team,
    set_active,
    update_user,
)
from app.auth.service import CurrentUser
from app.errors import FieldError
from app.fields import reference
from app.pagination import PageRequest, parse_search, reject_unknown_query
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]


def ids(form: FormMultiDict, name: str) -> list[int]:
    """Read the checked ids of a group of checkboxes, rejecting non-ids."""
    values = []
    for raw in form.getall(name, []):
        value = reference(name, str(raw))
        if value is not None:
            values.append(value)
    return sorted(set(values))


def role_from_form(form: FormMultiDict) -> RoleInput:
    """Read the permission grid (``perm.<type>.<action>``) and field rules
    (``rule.<type>.<field>``, empty for no rule) of the role form."""
    permissions: dict[str, dict[str, str]] = {}
    rules: dict[str, dict[str, str]] = {}
    for key, value in form.multi_items():
        kind, _, rest = key.partition(".")
        object_type, _, name = rest.partition(".")
        if kind == "perm":
            permissions.setdefault(object_type, {})[name] = str(value)
        elif kind == "rule" and value:
            rules.setdefault(object_type, {})[name] = str(value)
    return RoleInput(
        name=str(form.get("name", "")).strip(),
        label=str(form.get("label", "")),
        permissions=permissions,
        field_rules=rules,
        require_two_factor=form.get("require_two_factor") == "on",
    )


class AdminController(Controller):
    path = "/admin"
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/")
    async def admin_home(self) -> Redirect:
        return Redirect("/admin/users")

    @get("/users", before_request=reject_unknown_query)
    async def users_page(
        self,
        q: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
    ) -> Template:
        search = parse_search(q)
        paging = PageRequest.parse(page, size, path="/admin/users", keep={"q": search})
        return Template(
            "admin/users.html",
            context={
                "users": await list_users(search, paging),
                "search": search,
                "section": "admin",
            },
        )

    @get("/users/new")
    async def new_user_page(self) -> Template:
        return Template("admin/user_new.html", context=await new_user_context({}, None))

    @post("/users")
    async def create_user(self, request: UserRequest) -> Template | Redirect:
        form = await request.form()
        try:
            user_id = await create_user_account(
                email=str(form.get("email", "")),
                name=str(form.get("name", "")),
                password=str(form.get("password", "")),
                role_ids=ids(form, "roles"),
                team_ids=ids(form, "teams"),
                primary_team=reference("primary_team", form.get("primary_team")),
                actor_id=request.user.id,
            )
        except FieldError as error:
            typed = {key: form.get(key) for key in ("email", "name")}
            return Template(
                "admin/user_new.html",
                context=await new_user_context(typed, error),
                status_code=422,
            )
        return Redirect(f"/admin/users/{user_id}")

    @get("/users/{user_id:int}")
    async def user_page(self, user_id: RecordId) -> Template:
        return Template(
            "admin/user.html", context=await user_context(await get_user(user_id))
        )

    @post("/users/{user_id:int}")
    async def edit_user(self, request: UserRequest, user_id: RecordId) -> Template:
        form = await request.form()
        try:
            changed = await update_user(
                user_id,
                UserChanges(
                    name=str(form.get("name", "")),
                    role_ids=ids(form, "roles"),
                    team_ids=ids(form, "teams"),
                    primary_team=reference("primary_team", form.get("primary_team")),
                ),
                request.user.id,
            )
        except FieldError as error:
            logger.info(
                "user edit rejected user_id=%s by user_id=%s field=%s",
                user_id,
                request.user.id,
                error.field,
            )
            context = await user_context(await get_user(user_id), error=error)
            return Template("admin/user.html", context=context, status_code=422)
        context = await user_context(await get_user(user_id), saved=changed)
        return Template("admin/user.html", context=context)

    @post("/users/{user_id:int}/deactivate")
    async def deactivate(self, request: UserRequest, user_id: RecordId) -> Template:
        return await change_active(request, user_id, active=False)

    @post("/users/{user_id:int}/reactivate")
    async def reactivate(self, request: UserRequest, user_id: RecordId) -> Template:
        return await change_active(request, user_id, active=True)

    @get("/teams", before_request=reject_unknown_query)
    async def teams_page(
        self, page: FromQuery[str | None] = None, size: FromQuery[str | None] = None
    ) -> Template:
        paging = PageRequest.parse(page, size, path="/admin/teams")
        return Template("admin/teams.html", context=await teams_context(paging))

    @post("/teams")
    async def create_team(self, request: UserRequest) -> Template | Redirect:
        return await submit_team(request, None)

    @post("/teams/{team_id:int}")
    async def edit_team(
        self, request: UserRequest, team_id: RecordId
    ) -> Template | Redirect:
        return await submit_team(request, team_id)

    @get("/roles", before_request=reject_unknown_query)
    async def roles_page(
        self, page: FromQuery[str | None] = None, size: FromQuery[str | None] = None
    ) -> Template:
        paging = PageRequest.parse(page, size, path="/admin/roles")
        return Template(
            "admin/roles.html",
            context={"roles": await list_roles(paging), "section": "admin"},
        )

    @get("/roles/new")
    async def new_role_page(self) -> Template:
        return Template("admin/role.html", context=role_context(None, None, None))

    @post("/roles")
    async def create_role(self, request: UserRequest) -> Template | Redirect:
        return await submit_role(request, None)

    @get("/roles/{role_id:int}")
    async def role_page(self, role_id: RecordId) -> Template:
        role = await get_role(role_id)
        return Template("admin/role.html", context=role_context(role, None, None))

    @post("/roles/{role_id:int}")
    async def edit_role(
        self, request: UserRequest, role_id: RecordId
    ) -> Template | Redirect:
        return await submit_role(request, role_id)


async def change_active(request: UserRequest, user_id: int, active: bool) -> Template:
    try:
        ended = await set_active(user_id, active, request.user.id)
    except FieldError as error:
        context = await user_context(await get_user(user_id), error=error)
        return Template("admin/user.html", context=context, status_code=422)
    logger.info("sessions ended user_id=%s count=%s", user_id, ended)
    return Template(
        "admin/user.html",
        context=await user_context(await get_user(user_id), saved=True),
    )


async def new_user_context(
    typed: dict[str, Any], error: FieldError | None
) -> dict[str, Any]:
    return {
        "typed": typed,
        "error": error,
        "roles": await all_roles(),
        "teams": await all_teams(),
        "section": "admin",
    }


async def user_context(
    user: dict[str, Any], error: FieldError | None = None, saved: bool = False
) -> dict[str, Any]:
    return {
        "user": user,
        "roles": await all_roles(),
        "teams": await all_teams(),
        "error": error,
        "saved": saved,
        "section": "admin",
    }


async def teams_context(
    paging: PageRequest, error: FieldError | None = None
) -> dict[str, Any]:
    return {"teams": await list_teams(paging), "error": error, "section": "admin"}


async def submit_team(request: UserRequest, team_id: int | None) -> Template | Redirect:
    form = await request.form()
    try:
        await save_team(
            team_id,
            str(form.get("name", "")),
            str(form.get("region", "")),
            request.user.id,
        )
    except FieldError as error:
        context = await teams_context(PageRequest(path="/admin/teams"), error)
        return Template("admin/teams.html", context=context, status_code=422)
    return Redirect("/admin/teams")


def role_context(
    role: dict[str, Any] | None,
    typed: RoleInput | None,
    error: FieldError | None,
) -> dict[str, Any]:
    """Build the role form: the stored grid, or what the admin typed."""
    if typed is not None:
        permissions, rules = typed.permissions, typed.field_rules
        values = {
            "name": typed.name,
            "label": typed.label,
            "require_two_factor": typed.require_two_factor,
        }
    elif role is not None:
        permissions = decode_json(role["permissions"])
        rules = decode_json(role["field_rules"])
        values = {
            "name": role["name"],
            "label": role["label"],
            "require_two_factor": role["require_two_factor"],
        }
    else:
        permissions, rules = {}, {}
        values = {"name": "", "label": "", "require_two_factor": False}
    return {
        "role": role,
        "values": values,
        "permissions": permissions,
        "rules": rules,
        "object_types": list(OBJECT_TYPES.values()),
        "actions": ACTIONS,
        "scopes": SCOPES,
        "field_rules": FIELD_RULES,
        "locked": role is not None and role["name"] == ADMIN_ROLE,
        "error": error,
        "section": "admin",
    }


async def submit_role(request: UserRequest, role_id: int | None) -> Template | Redirect:
    form = await request.form()
    typed = role_from_form(form)
    try:
        saved_id = await save_role(role_id, typed, request.user.id)
    except FieldError as error:
        role = await get_role(role_id) if role_id is not None else None
        return Template(
            "admin/role.html",
            context=role_context(role, typed, error),
            status_code=422,
        )
    return Redirect(f"/admin/roles/{saved_id}")
