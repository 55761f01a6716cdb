from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "API keys"

    def ready(self) -> None:
        # Importing registers the drf-spectacular extension for our auth class,
        # and the receivers that log and count failed logins and lockouts.
        from accounts import lockout, schema  # noqa: F401
