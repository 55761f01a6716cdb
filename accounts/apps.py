from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "API keys"

    def ready(self) -> None:
        # Importing registers the drf-spectacular extension for our auth class.
        from accounts import schema  # noqa: F401
