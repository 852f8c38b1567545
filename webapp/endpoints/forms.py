from __future__ import annotations

from django import forms

from webapp.endpoints.models import EndpointKind
from webapp.tasks.forms import JSONObjectField


class EndpointForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=EndpointKind.choices, initial=EndpointKind.OPENAI)
    # Not a URLField: Django's URL validator refuses host names without a dot (http://gpu-node:8000/v1).
    base_url = forms.CharField(max_length=200, required=False, label="Base URL",
                              help_text="For OpenAI-compatible servers, e.g. http://gpu-node:8000/v1 (vllm serve).")
    model = forms.CharField(max_length=300, help_text="Model name on the server, a local path, or “bundled”.")
    api_key_env = forms.CharField(
        max_length=100, required=False, label="API key from environment variable",
        help_text="The NAME of the variable that holds the key (e.g. OPENAI_API_KEY), never the key itself.")
    default_params = JSONObjectField(label="Sampling defaults",
                                     help_text='JSON object, e.g. {"temperature": 0.7, "max_tokens": 512}.')
    max_concurrency = forms.IntegerField(min_value=1, max_value=1024, initial=8)
    requests_per_minute = forms.IntegerField(min_value=1, required=False, label="Requests per minute",
                                             help_text="Leave empty for no limit.")
    tokens_per_minute = forms.IntegerField(min_value=1, required=False, label="Tokens per minute",
                                           help_text="Leave empty for no limit.")
    supports_structured_output = forms.BooleanField(required=False, initial=True,
                                                    label="Supports structured output (JSON schema)")
    row_version = forms.IntegerField(required=False, widget=forms.HiddenInput)
