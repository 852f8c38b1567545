from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Convert the bundled SmolLM2-135M-Instruct GGUF to safetensors under RUBRICON_MODELS_DIR (once)."

    def handle(self, *args, **options):
        # Imported here: the web process has no torch, and only this command needs it.
        from training.models import ModelError, ensure_bundled_model

        try:
            path = ensure_bundled_model(settings.MODELS_DIR)
        except ModelError as error:
            raise CommandError(str(error)) from error
        except ImportError as error:
            raise CommandError(f"{error}. Install the training extras: pip install -e '.[train]'") from error
        self.stdout.write(f"Bundled model ready at {path}")
