from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.models import Project
from webapp.core.params import parse_id
from webapp.core.permissions import Action, project_view
from webapp.endpoints import selectors, services
from webapp.endpoints.forms import EndpointForm
from webapp.endpoints.models import ModelEndpoint
from webapp.tasks.forms import conflict_form, field_rows, form_error

FORM = "endpoints/endpoint_form.html"


def _page(request: HttpRequest, form: EndpointForm, endpoint: ModelEndpoint | None, *, current=None,
          check=None, status: int = 200) -> HttpResponse:
    context = {"form": form, "endpoint": endpoint, "field_rows": field_rows(form, current), "check": check,
               "key_vars": services.allowed_key_vars(), "hosts": services.allowed_hosts()}
    return render(request, FORM, context, status=status)


@require_GET
@project_view(Action.VIEW)
def endpoint_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "endpoints/endpoint_list.html", {"endpoints": selectors.endpoint_list(project)})


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def endpoint_create(request: HttpRequest, project: Project) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "row_version"}
        try:
            endpoint = services.endpoint_create(project=project, **data)
        except ApplicationError as error:
            form_error(form, error)
        else:
            messages.success(request, f"Endpoint “{endpoint.name}” created. Test the connection below.")
            return redirect("endpoints:edit", project.pk, endpoint.pk)
    return _page(request, form, None, status=400 if form.errors else 200)


def _initial(endpoint: ModelEndpoint) -> dict:
    return {f: getattr(endpoint, f) for f in (*services.ENDPOINT_EDITABLE, "row_version")}


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def endpoint_edit(request: HttpRequest, project: Project, endpoint_id: int) -> HttpResponse:
    endpoint = selectors.endpoint_get(project, endpoint_id)
    if request.method == "GET":
        check_id = parse_id(request.GET.get("check"), field="check")
        check = selectors.endpoint_check_get(endpoint, check_id) if check_id else None
        check = services.endpoint_check_expire_if_stale(check) if check else None
        return _page(request, EndpointForm(initial=_initial(endpoint)), endpoint, check=check)
    form = EndpointForm(request.POST)
    if form.is_valid():
        data = {**form.cleaned_data, "row_version": form.cleaned_data["row_version"] or 0}
        try:
            services.endpoint_update(endpoint=endpoint, **data)
        except ConflictError as error:
            form, current = conflict_form(EndpointForm, request.POST, error)
            return _page(request, form, endpoint, current=current, status=409)
        except ApplicationError as error:
            form_error(form, error)
        else:
            messages.success(request, "Endpoint saved.")
            return redirect("endpoints:edit", project.pk, endpoint.pk)
    return _page(request, form, endpoint, status=400)


@require_POST
@project_view(Action.EDIT)
def endpoint_delete(request: HttpRequest, project: Project, endpoint_id: int) -> HttpResponse:
    endpoint = selectors.endpoint_get(project, endpoint_id)
    services.endpoint_delete(endpoint=endpoint)
    messages.success(request, f"Endpoint “{endpoint.name}” deleted.")
    return redirect("endpoints:list", project.pk)


@require_POST
@project_view(Action.EDIT)
def endpoint_test(request: HttpRequest, project: Project, endpoint_id: int) -> HttpResponse:
    """Queue one real call with the saved settings on a worker; the result fragment polls until it is back."""
    endpoint = selectors.endpoint_get(project, endpoint_id)
    check = services.endpoint_check_start(endpoint=endpoint, created_by=request.user)
    if request.htmx:
        return render(request, f"{FORM}#connection_result", {"endpoint": endpoint, "check": check})
    return redirect(f"{reverse('endpoints:edit', args=[project.pk, endpoint.pk])}?check={check.pk}")


@require_GET
@project_view(Action.EDIT)
def endpoint_check(request: HttpRequest, project: Project, endpoint_id: int, check_id: int) -> HttpResponse:
    """The test-connection result (latency and reply, or what to fix); htmx polls it while the call runs."""
    endpoint = selectors.endpoint_get(project, endpoint_id)
    check = services.endpoint_check_expire_if_stale(selectors.endpoint_check_get(endpoint, check_id))
    return render(request, f"{FORM}#connection_result", {"endpoint": endpoint, "check": check})
