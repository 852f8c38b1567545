from __future__ import annotations

from rest_framework import serializers

from webapp.core.models import Project


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.CharField(read_only=True)

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", "created_at", "role"]
