from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.core import selectors, services
from webapp.core.errors import ApplicationError
from webapp.core.forms import MembershipForm, ProjectForm
from webapp.core.models import Project
from webapp.core.permissions import Action, project_view


@require_http_methods(["GET", "POST"])
def project_list(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.project_create(owner=request.user, **form.cleaned_data)
        messages.success(request, f"Project “{project.name}” created.")
        return redirect("core:dashboard", project.pk)
    projects = selectors.projects_for_user(request.user)
    return render(request, "core/project_list.html", {"projects": projects, "form": form})


@require_GET
@project_view(Action.VIEW)
def dashboard(request: HttpRequest, project: Project) -> HttpResponse:
    context = {"counts": selectors.project_counts(project), "workers": selectors.workers_seen()}
    return render(request, "core/dashboard.html", context)


@require_GET
@project_view(Action.VIEW)
def members(request: HttpRequest, project: Project) -> HttpResponse:
    return _members_page(request, project, MembershipForm())


@require_POST
@project_view(Action.MANAGE)
def member_add(request: HttpRequest, project: Project) -> HttpResponse:
    form = MembershipForm(request.POST)
    if form.is_valid():
        try:
            services.membership_set(project=project, **form.cleaned_data)
        except ApplicationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"{form.cleaned_data['username']} is now {form.cleaned_data['role']}.")
            return redirect("core:members", project.pk)
    return _members_page(request, project, form, status=400)


def _members_page(request: HttpRequest, project: Project, form: MembershipForm, status: int = 200) -> HttpResponse:
    context = {"members": selectors.project_members(project), "form": form}
    return render(request, "core/members.html", context, status=status)


@require_POST
@project_view(Action.MANAGE)
def member_remove(request: HttpRequest, project: Project, user_id: int) -> HttpResponse:
    services.membership_remove(project=project, user_id=user_id)
    messages.success(request, "Member removed.")
    return redirect("core:members", project.pk)


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@require_GET
def workers(request: HttpRequest) -> HttpResponse:
    """Every worker, its queues, last beat and what it runs (any signed-in user: workers are shared by all projects;
    a job is named and linked only for members of its project). htmx polls the table."""
    context = {"workers": selectors.workers_health(request.user), "stale_after_s": selectors.worker_stale_after_s()}
    template = "core/_workers_table.html" if request.headers.get("HX-Request") == "true" else "core/workers.html"
    return render(request, template, context)
