"""Projects: conversations shared by role (:mod:`parley.store.projects`).

Any member reads a project and lists its conversations (``GET /api/conversations?project_id=``);
``admin`` renames it, deletes it, and adds, changes and removes members. A project made with a
token's organisation claim is reached only with tokens of that organisation. Whoever reaches
nothing of a project gets a 404, never a 403 that would confirm it exists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from parley.api.deps import CurrentCaller, Services, ServicesDep
from parley.api.schemas import MemberRole, ProjectCreate, ProjectPatch
from parley.api.views import member_out, project_out
from parley.errors import ValidationFailed

router = APIRouter(prefix="/api/projects", tags=["projects"])

MemberId = Annotated[str, Path(min_length=1, max_length=255, description="A user id (a sub)")]


def _check_profile(s: Services, name: str | None) -> None:
    if name:
        s.engine.profile(name)  # an unknown profile is a 400 naming the known ones


@router.post("", status_code=201)
async def create(body: ProjectCreate, caller: CurrentCaller, s: ServicesDep) -> dict[str, Any]:
    """A project, with the caller as its admin (and in the caller's organisation)."""
    _check_profile(s, body.default_profile)
    project = await s.store.create_project(caller, **body.model_dump())
    return project_out(project)


@router.get("")
async def list_(
    caller: CurrentCaller,
    s: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> dict[str, Any]:
    """The caller's projects, with their role in each, newest first."""
    projects = await s.store.list_projects(caller, limit=limit)
    return {"items": [project_out(p) for p in projects]}


@router.get("/{project_id}")
async def get(project_id: str, caller: CurrentCaller, s: ServicesDep) -> dict[str, Any]:
    """The project and its members."""
    project, members = await s.store.get_project(caller, project_id)
    return project_out(project, members)


@router.patch("/{project_id}")
async def patch(
    project_id: str, body: ProjectPatch, caller: CurrentCaller, s: ServicesDep
) -> dict[str, Any]:
    """Rename it, or change its description, instructions or default profile (``admin``)."""
    fields = body.model_dump(exclude_unset=True)
    if "name" in fields and fields["name"] is None:
        raise ValidationFailed("a project keeps a name")
    _check_profile(s, body.default_profile)
    project = await s.store.update_project(caller, project_id, fields)
    return project_out(project)


@router.delete("/{project_id}", status_code=204)
async def delete(project_id: str, caller: CurrentCaller, s: ServicesDep) -> Response:
    """The project and all its conversations (``admin``)."""
    await s.store.delete_project(caller, project_id)
    return Response(status_code=204)


@router.put("/{project_id}/members/{user_id}")
async def put_member(
    project_id: str, user_id: MemberId, body: MemberRole, caller: CurrentCaller, s: ServicesDep
) -> dict[str, Any]:
    """Add a member with ``role``, or change theirs (``admin``); a project keeps an admin."""
    if not user_id.isprintable():
        raise ValidationFailed("a user id has no control characters")
    member = await s.store.set_member(caller, project_id, user_id, body.role)
    return member_out(member)


@router.delete("/{project_id}/members/{user_id}", status_code=204)
async def delete_member(
    project_id: str, user_id: MemberId, caller: CurrentCaller, s: ServicesDep
) -> Response:
    """Take a member out (``admin``): they reach nothing of the project any more."""
    await s.store.remove_member(caller, project_id, user_id)
    return Response(status_code=204)
